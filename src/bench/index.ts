// parallm/bench: the benchmark runners behind `parallm bench` (kernels, generation, strategies).
export { runKernelBench, describeDevice, type KernelBenchOptions, type KernelBenchResult } from './kernels.js';
export { runGenerateBench, type GenerateBenchOptions, type GenerateBenchResult } from './generate.js';
export { runTrainBench, type TrainBenchOptions, type TrainBenchResult } from './train.js';
export { runStrategyBench, defaultBenchDevices, type StrategyBenchOptions, type StrategyBenchResult } from './strategies.js';
