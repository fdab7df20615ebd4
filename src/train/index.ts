// Training: flat parameters, the per-op forward/backward stage, AdamW, checkpoints and the trainer.
export { FlatParams, paramLayout, type ParamEntry } from './params.js';
export { TrainStage, countTargets, IGNORE_INDEX, type MicroBatch, type ForwardOptions, type ForwardResult } from './stage.js';
export { lrAt, adamwStep, gradNorm, DEFAULT_ADAMW, type LrSchedule, type AdamwHyper } from './optim.js';
export { initParams, resolveModel, type InitOptions, type ModelSource } from './init.js';
export { saveCheckpoint, readCheckpointState, loadOptimizerState, checkSaveFolder, hfTensors, stageFiles, type CheckpointState, type SaveOptions, type StageRecord } from './checkpoint.js';
export { Trainer, train, type TrainOptions, type TrainResult, type StepEvent, type EvalEvent, type EpochEvent, type TokenData } from './trainer.js';
export { DataParallelTrainer, trainDataParallel, type DataParallelOptions } from './data-parallel.js';
export { GlobalBatchSlice, type DataShard } from './dp-data.js';
export { PipelineTrainer, trainPipeline, type PipelineTrainOptions, type TrainTaskTime } from './pipeline-parallel.js';
export { runSteps, type StepDriver, type StepOutcome } from './run-loop.js';
