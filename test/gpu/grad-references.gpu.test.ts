// The training kernels on CUDA: the same float64-reference and finite-difference checks as on the CPU
// (test/helpers/grad-cases.ts). Skipped where there is no GPU (CI).
import { describe } from 'vitest';
import { cudaDeviceCount } from '../../src/index.js';
import { gradKernelTests } from '../helpers/grad-cases.js';

describe.skipIf(cudaDeviceCount() === 0)('CUDA training kernels', () => gradKernelTests('cuda:0'));
