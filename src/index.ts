// parallm: multi-GPU inference and training of GPT-2 and LLaMA models from Node.js. The benchmark
// runners are the `parallm/bench` subpath (src/bench/index.ts).
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
export { DeviceEvent, DeviceStream, Graph, capture, withFrozenWeights } from './runtime.js';
export * as ops from './ops.js';
export { Model, type LoadOptions, type AsyncLoadOptions } from './models/model.js';
export { isAbortError, type LoadControl, type LoadProgress } from './models/load-steps.js';
export { PRESETS, presetConfig } from './models/presets.js';
export { modelConfig } from './models/source.js';
export type { Stage } from './models/weights.js';
export { tpLayout, shardConfig, type TpShard, type TpLayout } from './models/tp.js';
export { generate, generateSteps, streamText, type GenerateOptions, type Generation, type StepEvent, type SamplingOptions } from './engine/generate.js';
export { loadConfig, parseConfig, type ModelConfig, type ModelFamily } from './io/config.js';
export { SafetensorsFile, WeightStore, writeSafetensors, type StDType, type StTensorInfo } from './io/safetensors.js';
export { gpt2Tokenizer, loadTokenizer, loadTokenizerSync, type Tokenizer } from './io/tokenizer.js';
export {
  generationSchedule,
  gpipeSchedule,
  oneFOneBSchedule,
  clockTable,
  scheduleProblems,
  idealUtilization,
  splitSizes,
  type Schedule,
  type PlanTask,
  type TaskKind,
  type Edge,
  type EdgeKind,
} from './parallel/schedule.js';
export { Mesh, type MeshShape, type MeshAxis } from './parallel/mesh.js';
export {
  getDeviceMap,
  evenPlacement,
  interleavedPlacement,
  memoryPlacement,
  explicitPlacement,
  placeStages,
  placeMesh,
  stageMemory,
  type PlacedStage,
  type MemoryNeeds,
  type Strategy,
} from './parallel/placement.js';
export { generationPlan, type PipelinePlan, type PlanStage } from './engine/plan.js';
export { ParallelModel, type ParallelOptions, type ParallelGenerateOptions, type ParallelResult, type ParallelTextOptions, type ParallelTextResult, type ParallelLoadProgress } from './engine/parallel-model.js';
export type { TaskTime } from './engine/executor.js';
export { DevicePool, type PoolOptions, type Handler, type WorkerContext } from './parallel/pool.js';
export { Communicator, ncclStatus, newCommId, tcpCommId, type AllReducePath, type CommKind, type ReduceOp } from './parallel/comm.js';
export { launchEnv, launchSecret, type LaunchEnv, type Launcher } from './cluster/env.js';
export { rendezvous, type DistWorld, type ProcessLayout, type RendezvousOptions, type DistCommKind } from './cluster/rendezvous.js';
export { allGatherJson, processCommunicator } from './cluster/gather.js';
export { DataPartitioner } from './parallel/partitioner.js';
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
export { DataParallelTrainer, trainDataParallel, type DataParallelOptions } from './train/index.js';
export { PipelineTrainer, trainPipeline, type PipelineTrainOptions } from './train/index.js';
