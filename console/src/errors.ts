// Every error code the API answers, as a sentence a person can act on. The browser tests
// check this table against the codes the OpenAPI document lists.

export const ERROR_SENTENCES: Record<string, string> = {
  VALIDATION_ERROR: "Please correct this value.",
  BAD_REQUEST: "The request could not be understood.",
  UPLOAD_INTERRUPTED: "The upload broke off before the whole file arrived. Try again.",
  UNAUTHORIZED: "Your session has ended. Please sign in again.",
  INVALID_CREDENTIALS: "That e-mail and password do not match an account.",
  INVALID_SIGNATURE: "The request's signature is not valid.",
  FORBIDDEN: "You do not have permission to do that.",
  NOT_FOUND: "That page or resource does not exist.",
  USER_NOT_FOUND: "That user does not exist.",
  DATASET_NOT_FOUND: "That dataset does not exist (or was deleted).",
  JOB_NOT_FOUND: "That training job does not exist.",
  MODEL_NOT_FOUND: "That model does not exist (or was deleted).",
  ARTIFACT_NOT_FOUND: "That file is not stored for this model.",
  NOTIFICATION_NOT_FOUND: "That notification does not exist.",
  API_KEY_NOT_FOUND: "That API key does not exist (or was revoked).",
  METHOD_NOT_ALLOWED: "That action is not available here.",
  CONFLICT: "Someone changed this at the same time. Reload and try again.",
  EMAIL_EXISTS: "An account with this e-mail already exists. Sign in instead.",
  DATASET_NOT_READY: "The dataset is not ready for training yet.",
  DATASET_NOT_UPLOADING: "The dataset is no longer waiting for its file.",
  DATASET_IN_USE: "A training job still uses this dataset.",
  UPLOAD_NOT_FOUND: "Storage holds no file for this dataset yet. Upload it first.",
  UPLOAD_SIZE_MISMATCH: "The file's size differs from the size declared for it.",
  JOB_NOT_CANCELLABLE: "This job has already ended and cannot be cancelled.",
  MODEL_DEPLOYED: "The model is deployed; undeploy it first.",
  MODEL_ARCHIVED: "The model is archived; restore it first.",
  MODEL_NOT_DEPLOYED: "The model is not deployed; deploy it first.",
  MODEL_NOT_SERVING: "The model's deployment is still starting; try again in a moment.",
  ADAPTER_NOT_SERVABLE: "No inference engine here can serve this model as trained.",
  PAYLOAD_TOO_LARGE: "That is larger than the service accepts.",
  UNSUPPORTED_MEDIA_TYPE: "That kind of content is not accepted here.",
  RATE_LIMITED: "Too many requests. Wait a moment and try again.",
  INTERNAL_ERROR: "Something went wrong on our side. Try again in a moment.",
  NOT_READY: "The service is starting or one of its parts is unavailable.",
  NETWORK: "The service could not be reached. Check your connection.",
  UPLOAD_FAILED: "Storage refused the upload. Try again.",
};

export function sentence(code: string): string {
  return ERROR_SENTENCES[code] ?? "Something went wrong.";
}
