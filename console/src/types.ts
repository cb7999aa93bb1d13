// The shapes of the API's answers the console reads (see /api/openapi.json).

export interface User {
  id: string;
  email: string;
  name: string;
  organization?: string | null;
  role: string;
  subscriptionTier: string;
  monthlyBudget?: number | null;
  createdAt: string;
  updatedAt: string;
}

export interface Session {
  token: string;
  expiresAt: string;
  user: User;
}

export interface Dataset {
  id: string;
  name: string;
  description?: string | null;
  fileName: string;
  fileSize: number;
  format: string;
  status: "uploading" | "validating" | "ready" | "error";
  errorMessage?: string | null;
  trainingReady: boolean;
  totalConversations?: number | null;
  totalTrainingPairs?: number | null;
  totalValidationPairs?: number | null;
  totalTokens?: number | null;
  avgTurnsPerConversation?: number | null;
  avgTokensPerTurn?: number | null;
  tokenizer?: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface Issue {
  line?: number | null;
  field?: string | null;
  code: string;
  message: string;
}

export interface LengthDistribution {
  min: number;
  max: number;
  mean: number;
  median: number;
  p95: number;
}

export interface DatasetDetail extends Dataset {
  fullStatistics?: {
    lengthDistribution?: LengthDistribution | null;
    topicDistribution?: { topic: string; count: number }[];
    uniqueSpeakers?: number;
    vocabularySize?: number;
  } | null;
  sampleConversations: { conversationId: string; turns: { role: string; content: string }[] }[];
  validationErrors: Issue[];
  validationWarnings: Issue[];
  validationErrorCount: number;
  validationWarningCount: number;
}

export interface Registered {
  datasetId: string;
  uploadUrl: string;
  uploadMethod: string;
  uploadHeaders: Record<string, string>;
  uploadExpiresAt: string;
}

export interface Bound {
  field: string;
  min?: number | null;
  max?: number | null;
  minExclusive?: boolean;
  /** The range fine-tuning usually takes: a value outside it is allowed but flagged. */
  typicalMin?: number | null;
  typicalMax?: number | null;
  values?: string[] | null;
}

export type Hyperparameters = Record<string, number | string | string[]>;

export interface Catalogue {
  presets: { id: string; description: string; hyperparameters: Hyperparameters }[];
  bounds: Bound[];
  baseModels: {
    id: string;
    minGpuMemoryGb: number;
    hiddenSize: number;
    layers: number;
    tokensPerSecond: Record<string, number>;
    defaultGpuConfig?: { instanceType: string; numGPUs: number } | null;
    /** Each preset's values on this model (its learning rate scaled for the model). */
    presetHyperparameters: Record<string, Hyperparameters>;
  }[];
  defaultBaseModel: string;
  gpuTypes: { id: string; memoryGb: number; ratePerGpuHour: number }[];
  numGPUs: number[];
}

export interface Estimate {
  totalSteps: number;
  trainingTokens: number;
  tokensPerSecond: number;
  duration: { estimated: number; min: number; max: number };
  cost: { breakdown: { compute: { hours: number; total: number }; storage: { gb: number; total: number }; dataTransfer: { gb: number; total: number } }; total: number; currency: string };
  configuration: { hyperparameters: Hyperparameters; gpuConfig: { instanceType: string; numGPUs: number } };
}

export interface MetricPoint {
  step: number;
  epoch: number;
  trainingLoss: number;
  validationLoss?: number | null;
  learningRate: number;
  gradientNorm?: number | null;
  throughput?: number | null;
  gpuUtilization?: number | null;
  timestamp: string;
}

export interface Checkpoint {
  id: string;
  step: number;
  epoch: number;
  loss: number;
  s3Key?: string | null;
  size?: number | null;
  createdAt: string;
}

export interface Job {
  id: string;
  name: string;
  status: "queued" | "initializing" | "running" | "completed" | "failed" | "cancelled";
  currentStage?: string | null;
  progress: number;
  currentEpoch?: number | null;
  totalEpochs?: number | null;
  currentStep?: number | null;
  totalSteps?: number | null;
  datasetId: string;
  datasetName?: string | null;
  baseModel: string;
  presetId: string;
  hyperparameters?: Hyperparameters;
  gpuConfig: { instanceType: string; numGPUs: number };
  currentMetrics?: Partial<MetricPoint> | null;
  currentCost: number;
  estimatedTotalCost: number;
  finalCost?: number | null;
  refundAmount?: number | null;
  costBreakdown?: { compute: number; storage: number; dataTransfer: number };
  estimatedCompletionAt?: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
  artifactId?: string | null;
  createdAt: string;
  completedAt?: string | null;
}

export interface JobDetail extends Job {
  metricsHistory: MetricPoint[];
  lossCurve: { steps: number[]; trainingLoss: number[]; validationLoss: (number | null)[] };
  checkpoints: Checkpoint[];
  logs: { timestamp: string; level: string; message: string }[];
}

export interface ArtifactFile {
  s3Key: string;
  fileName: string;
  size: number;
  checksum: string;
}

export interface Model {
  id: string;
  jobId: string;
  datasetId: string;
  name: string;
  version: string;
  description: string;
  status: "stored" | "deployed" | "archived";
  qualityMetrics: {
    finalTrainingLoss?: number;
    finalValidationLoss?: number;
    bestValidationLoss?: number;
    perplexity?: number;
    convergenceQuality?: string;
    convergenceScore?: number;
    validationScores?: Record<string, number> | null;
    bleuScore?: number | null;
    comparison?: BaseComparison | null;
    /** The step the adapter is from (with early stopping, the best checkpoint's). */
    adapterStep?: number | null;
  };
  trainingSummary: { totalEpochs: number; totalSteps: number; trainingDuration: number; totalCost: number; gpuHours: number; retryCount: number };
  configuration: { baseModel: string; datasetName: string; presetUsed: string; hyperparameters: Hyperparameters; gpuConfig: { instanceType: string; numGPUs: number } };
  artifacts: {
    adapterModel?: ArtifactFile | null;
    adapterConfig?: ArtifactFile | null;
    tokenizer?: ArtifactFile | null;
    checkpoints: (ArtifactFile & { id: string; step: number; epoch: number; loss: number })[];
  };
  deployment?: {
    status: "deploying" | "deployed" | "failed" | "stopped";
    environment: string;
    endpointUrl?: string | null;
    minReplicas: number;
    maxReplicas: number;
    failureReason?: string | null;
  } | null;
  parentModelId?: string | null;
  childModelIds: string[];
  sizeBytes: number;
  createdAt: string;
}

export interface ModelDetail extends Model {
  metricsHistory: MetricPoint[];
  datasetLineage: { preprocessingSteps: string[]; splits: { train: number; validation: number } };
}

export interface Notification {
  id: string;
  type: string;
  title: string;
  message: string;
  priority: string;
  read: boolean;
  actionUrl?: string | null;
  createdAt: string;
}

export interface CostPeriod {
  period: string;
  date: string;
  compute: number;
  storage: number;
  dataTransfer: number;
  total: number;
}

/** One side of a model's comparison on its validation pairs. */
export interface ModelScores {
  loss: number;
  perplexity: number;
  bleu: number;
  rougeL: number;
}

/** The base model against the adapter, measured by the trainer at the end of a real run. */
export interface BaseComparison {
  validationPairs: number;
  generatedPairs: number;
  base: ModelScores;
  adapter: ModelScores;
}
