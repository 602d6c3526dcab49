/**
 * The one error hierarchy of Sluice. An error's `name` is what the state machine's
 * Retry and Catch match on (Lambda reports it as the error type), so names are part
 * of the contract with `state-machines/pipeline.asl.json`.
 */
export class SluiceError extends Error {
  override name = 'Sluice.Error';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The pipeline definition is invalid. Not retried. */
export class DefinitionError extends SluiceError {
  override name = 'Sluice.DefinitionError';
}

/** An input object cannot be read as the pipeline's format (wrong header, not CSV...). Not retried. */
export class InputError extends SluiceError {
  override name = 'Sluice.InputError';
}

/**
 * An input object is not the pipeline's format as a whole (its header does not fit; it is not
 * compressed as its name says, is cut short or corrupt, or is a decompression bomb): a run
 * refuses it and marks that version refused, so that scheduled runs skip it until it changes.
 * An InputError by name for the state machine.
 */
export class RefusedInputError extends InputError {}

/**
 * An object the run planned no longer exists (deleted mid-run). An InputError by name: the
 * state machine treats it like any unreadable input; the class lets a reader tell "missing" apart.
 */
export class ObjectMissingError extends InputError {
  readonly bucket: string;
  readonly key: string;
  constructor(bucket: string, key: string, message: string) {
    super(message);
    this.bucket = bucket;
    this.key = key;
  }
}

/** The run's books do not balance: a chunk is missing or rows went unaccounted. Not retried. */
export class VerifyError extends SluiceError {
  override name = 'Sluice.VerifyError';
}

/** A request to a handler is malformed. Not retried. */
export class RequestError extends SluiceError {
  override name = 'Sluice.RequestError';
}

/** A dependency (S3, the network) failed in a way that a retry may fix. Retried with backoff. */
export class TransientError extends SluiceError {
  override name = 'Sluice.TransientError';
}

/** A required setting is missing or invalid at start-up. */
export class ConfigError extends SluiceError {
  override name = 'Sluice.ConfigError';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
