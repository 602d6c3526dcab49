/**
 * The one catalog of the state machine's wiring: each handler's entry file, the ASL
 * placeholder that names it, its local function name, its size, and the environment every
 * handler reads. The CDK stack (`infra/`), the embedded runtime (`runtime/`) and the
 * functions' configuration (`config.ts`) all read these; `test/infra/contract.test.ts` ties
 * the ASL file to them, so a name spelled differently in two places fails a test, not a deploy.
 */

/** A Lambda handler of the state machine. */
export interface HandlerSpec {
  /** CDK construct id (also the start of its log group and role ids). */
  readonly id: string;
  /** File under `functions/handlers/` that exports `handler`. */
  readonly entry: string;
  /** `${Placeholder}` of the ASL file that CDK and the runtime replace with the function's ARN. */
  readonly placeholder: string;
  /** Function name of the embedded runtime (`arn:aws:lambda:us-east-1:000000000000:function:<localName>`). */
  readonly localName: string;
  /** Installs @duckdb/node-api (and its native binding) next to the bundle. */
  readonly duckdb: boolean;
  /** Memory in MB (the worker's comes from the stack's props). */
  readonly memorySize: number;
  /** Timeout in seconds (the worker's comes from the stack's props). */
  readonly timeoutSeconds: number;
}

export const HANDLERS = {
  plan: {
    id: 'Plan',
    entry: 'plan.ts',
    placeholder: 'PlanFunctionArn',
    localName: 'sluice-plan',
    duckdb: false,
    // A run of 1,000,000 objects: the listing, the ledger's index and a 170 MB manifest take
    // 1.3 GB of RSS and 1.0 GB of JavaScript heap (measured locally, docs/scaling.md), more than
    // a 1,024 MB Lambda gives Node. Plan runs for seconds to minutes a run: cents a day.
    memorySize: 3008,
    timeoutSeconds: 900,
  },
  work: {
    id: 'Work',
    entry: 'work.ts',
    placeholder: 'WorkFunctionArn',
    localName: 'sluice-work',
    duckdb: true,
    memorySize: 1769,
    timeoutSeconds: 120,
  },
  // Verify merges the chunks' rejects with DuckDB.
  verify: {
    id: 'Verify',
    entry: 'verify.ts',
    placeholder: 'VerifyFunctionArn',
    localName: 'sluice-verify',
    duckdb: true,
    // A run of 1,000,000 objects: the manifest, the chunks' results, the inputs and the input
    // listing alone hold 1.0 GB of JavaScript heap (measured locally, docs/scaling.md), beside
    // DuckDB's merge of the rejects (60% of the memory): 1,769 MB left Node too little.
    memorySize: 3008,
    timeoutSeconds: 600,
  },
  finish: {
    id: 'Finish',
    entry: 'finish.ts',
    placeholder: 'FinishFunctionArn',
    localName: 'sluice-finish',
    duckdb: false,
    // A run of 1,000,000 objects: its inputs (133 MB of JSON), their marker names and the ledger's
    // listing peak at 1.7 GB of RSS (measured locally, docs/scaling.md), past 512 MB.
    memorySize: 3008,
    // Lambda's longest (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html):
    // a ledger marker per object is 1,000,000 PUTs for a 1,000,000-object run, about 5 minutes
    // at 64 in flight and 20 ms each (docs/scaling.md); 300 s failed such runs after their load.
    timeoutSeconds: 900,
  },
  recordFailure: {
    id: 'RecordFailure',
    entry: 'record-failure.ts',
    placeholder: 'RecordFailureFunctionArn',
    localName: 'sluice-record-failure',
    duckdb: false,
    memorySize: 256,
    timeoutSeconds: 60,
  },
  // The load lease (functions/lease/): an acquire waits up to 45 s in the function for a busy lease.
  lease: {
    id: 'Lease',
    entry: 'lease.ts',
    placeholder: 'LeaseFunctionArn',
    localName: 'sluice-lease',
    duckdb: false,
    memorySize: 256,
    timeoutSeconds: 90,
  },
} as const satisfies Record<string, HandlerSpec>;

export type HandlerName = keyof typeof HANDLERS;

/** The ASL placeholders that are not handler ARNs. */
export const PLACEHOLDERS = {
  athenaWorkGroup: 'AthenaWorkGroup',
  glueDatabase: 'GlueDatabase',
  failureTopicArn: 'FailureTopicArn',
  /** Bucket of the Distributed Map's ResultWriter (the working bucket). */
  workingBucketName: 'WorkingBucketName',
  /** `EXPRESS` on AWS; `STANDARD` on LocalStack, whose ASL grammar accepts nothing else for Distributed Map children. */
  childExecutionType: 'ChildExecutionType',
} as const;

/** Every placeholder of the ASL file, sorted. */
export const ALL_PLACEHOLDERS: readonly string[] = [
  ...Object.values(HANDLERS).map((h) => h.placeholder),
  ...Object.values(PLACEHOLDERS),
].sort();

/** The environment every handler reads (set by CDK on AWS and by `runtime/environment.ts` locally). */
export const ENV = {
  inputBucket: 'SLUICE_INPUT_BUCKET',
  workingBucket: 'SLUICE_WORKING_BUCKET',
  warehouseBucket: 'SLUICE_WAREHOUSE_BUCKET',
  pipelinesDir: 'SLUICE_PIPELINES_DIR',
  athenaDatabase: 'SLUICE_ATHENA_DATABASE',
  tmpDir: 'SLUICE_TMP_DIR',
  chunkSize: 'SLUICE_CHUNK_SIZE',
  s3ForcePathStyle: 'SLUICE_S3_FORCE_PATH_STYLE',
} as const;

/** Prefix of the working bucket where the Distributed Map's ResultWriter writes (the ASL names it too). */
export const MAP_RESULTS_PREFIX = 'map-results';

/**
 * Error names that only the ASL raises: the Fail states of the Load state's query loop (a
 * commit conflict, which the Statement's Retry matches; a failed or cancelled query) and the
 * default of FailureDefaults. The handlers' error names are the `name`s of the classes in
 * `errors.ts`; `test/infra/contract.test.ts` checks that every Sluice.* name of the ASL is one of the two.
 */
export const ASL_ERROR_NAMES = [
  'Sluice.CommitConflict',
  'Sluice.QueryFailed',
  'Sluice.QueryCancelled',
  'Sluice.Unknown',
] as const;
