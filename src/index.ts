// parallm: multi-GPU inference and training of GPT-2 and LLaMA models from Node.js.
export { Tensor, numelOf, type Shape, type TensorOptions } from './tensor.js';
export { type DType, DTYPES, dtypeSize, f32ToBf16, bf16ToF32, f32ToF16, f16ToF32 } from './dtype.js';
export {
  devices,
  deviceInfo,
  defaultDevice,
  parseDevice,
  cudaDeviceCount,
  buildInfo,
  configureCpuDevices,
  ensureCpuDevices,
  synchronize,
  memoryStats,
  resetPeakMemory,
  emptyCache,
  type DeviceInfo,
  type MemoryStats,
} from './device.js';
export { DeviceEvent, DeviceStream, Graph, capture } from './runtime.js';
export * as ops from './ops.js';
export { runKernelBench, type KernelBenchOptions, type KernelBenchResult } from './bench/kernels.js';
export { Model, type LoadOptions } from './models/model.js';
export { PRESETS, presetConfig } from './models/presets.js';
export { generate, generateSteps, streamText, type GenerateOptions, type Generation, type StepEvent, type SamplingOptions } from './engine/generate.js';
export { loadConfig, parseConfig, type ModelConfig, type ModelFamily } from './io/config.js';
export { SafetensorsFile, WeightStore, writeSafetensors, type StDType, type StTensorInfo } from './io/safetensors.js';
export { gpt2Tokenizer, loadTokenizer, loadTokenizerSync, type Tokenizer } from './io/tokenizer.js';
export { runGenerateBench, type GenerateBenchOptions, type GenerateBenchResult } from './bench/generate.js';
export { clockCycles, stageTasks, idealUtilization, splitSizes } from './parallel/schedule.js';
export { getDeviceMap, evenPlacement, memoryPlacement, explicitPlacement, stageMemory, type Stage, type MemoryNeeds } from './parallel/placement.js';
export { ParallelModel, type Strategy, type ParallelOptions, type ParallelGenerateOptions, type ParallelResult } from './parallel/strategies.js';
export { DevicePool, type PoolOptions, type Handler, type WorkerContext } from './parallel/pool.js';
export { Communicator, ncclStatus, newCommId, type CommKind, type ReduceOp } from './parallel/comm.js';
export { DataPartitioner } from './parallel/partitioner.js';
export { runStrategyBench, type StrategyBenchOptions, type StrategyBenchResult } from './bench/strategies.js';
export { brownDocuments, brownFiles, brownToText, textDocuments, type Document, type BrownFile } from './data/corpus.js';
export {
  readTokenFile,
  readTokenFileHeader,
  writeTokenFile,
  TOKEN_FILE_MAGIC,
  TOKEN_FILE_VERSION,
  type TokenFile,
  type TokenFileHeader,
  type TokenArray,
} from './data/tokenfile.js';
export { prepareDataset, readDataset, type Dataset, type PrepareOptions, type PreparedDataset, type PrepareProgress, type DatasetManifest } from './data/prepare.js';
export { TrainLoader, valBatches, valBatchCount, windowCount, type Batch, type LoaderPosition, type TrainLoaderOptions, type ValBatchOptions } from './data/loader.js';
export * as training from './train/index.js';
export { Trainer, train, lrAt, type TrainOptions, type TrainResult, type StepEvent as TrainStepEvent, type EvalEvent, type EpochEvent } from './train/index.js';
