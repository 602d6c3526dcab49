/**
 * The Lambda handlers of the state machine, built from `functions/catalog.ts` (entry files,
 * sizes, environment names), so that the stack, the embedded runtime and the ASL placeholders
 * cannot name a handler differently.
 */
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ArnFormat, Duration, RemovalPolicy, type Size, Stack } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { ApplicationLogLevel, Architecture, LoggingFormat, Runtime, SystemLogLevel } from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ENV, HANDLERS, type HandlerName, type HandlerSpec } from '../functions/catalog.ts';
import { ConfigError } from '../functions/errors.ts';
import { LEASE_PREFIX } from '../functions/lease/lease.ts';
import { SERVICE_NAME_ENV } from '../functions/observability.ts';
import { acknowledge, resourceFinding } from './nag.ts';
import { type CpuArchitecture, npmCpu } from './target.ts';

export interface HandlersProps {
  readonly repoRoot: string;
  readonly handlersDir: string;
  readonly pipelinesDir: string;
  readonly buckets: { readonly input: IBucket; readonly working: IBucket; readonly warehouse: IBucket };
  readonly glueDatabase: string;
  /** The state machine's name: the lease function asks DescribeExecution about its executions. */
  readonly stateMachineName: string;
  readonly logRetention: RetentionDays;
  /** Architecture of every function, and of the DuckDB binding installed next to their bundles. */
  readonly architecture: CpuArchitecture;
  /** Sets the functions' S3 clients to path-style addressing (LocalStack). */
  readonly s3ForcePathStyle: boolean;
  readonly worker: { readonly memorySize: number; readonly timeout: Duration; readonly ephemeralStorageSize: Size };
}

type Access = 'read' | 'put' | 'readWrite';
const GRANT = {
  read: (bucket, fn) => bucket.grantRead(fn),
  put: (bucket, fn) => bucket.grantPut(fn),
  readWrite: (bucket, fn) => bucket.grantReadWrite(fn),
} as const satisfies Record<Access, (bucket: IBucket, fn: NodejsFunction) => unknown>;
/** The wildcard actions of each CDK grant set, as cdk-nag's IAM5 names them. */
const READ_WILDCARDS = ['Action::s3:GetObject*', 'Action::s3:GetBucket*', 'Action::s3:List*'];
const GRANT_WILDCARDS: Record<Access, readonly string[]> = {
  read: READ_WILDCARDS,
  put: ['Action::s3:Abort*'],
  readWrite: [...READ_WILDCARDS, 'Action::s3:DeleteObject*', 'Action::s3:Abort*'],
};

/** Where the bundle keeps the pipeline definitions (`afterBundling` copies them there). */
const BUNDLED_PIPELINES_DIR = '/var/task/pipelines';

/** ESM bundles still hold CommonJS code that calls `require`; give it one. */
const REQUIRE_SHIM =
  "import { createRequire as __sluiceCreateRequire } from 'node:module'; const require = __sluiceCreateRequire(import.meta.url);";

const LAMBDA_ARCHITECTURE: Record<CpuArchitecture, Architecture> = {
  arm64: Architecture.ARM_64,
  x86_64: Architecture.X86_64,
};

/**
 * npm settings of the bundling step. `bundling.nodeModules` installs @duckdb/node-api with npm,
 * which picks the native binding package (`@duckdb/node-bindings-<os>-<cpu>`) by these, not by the
 * build host: Linux, the functions' CPU, and glibc (Lambda's Amazon Linux 2023), so that a build on
 * macOS or on a musl host still gets the binding Lambda can load.
 */
export function bundlingEnvironment(architecture: CpuArchitecture): Record<string, string> {
  return { npm_config_os: 'linux', npm_config_cpu: npmCpu(architecture), npm_config_libc: 'glibc' };
}

/**
 * The Lambda handlers of the state machine, bundled with esbuild for Node 24 on the chosen
 * architecture (arm64 on AWS). Each has its own role (logging to its own log group only, plus its
 * bucket grants) instead of AWSLambdaBasicExecutionRole, whose log permissions cover every log
 * group of the account.
 */
export class Handlers extends Construct {
  readonly functions: Readonly<Record<HandlerName, NodejsFunction>>;
  readonly plan: NodejsFunction;
  readonly work: NodejsFunction;
  readonly verify: NodejsFunction;
  readonly finish: NodejsFunction;
  readonly recordFailure: NodejsFunction;
  readonly lease: NodejsFunction;
  /** The `service` of the functions' log lines and metric dimension: the stack's name. */
  readonly serviceName: string;

  constructor(scope: Construct, id: string, props: HandlersProps) {
    super(scope, id);
    const { input, working, warehouse } = props.buckets;
    this.serviceName = Stack.of(this).stackName;
    const environment: Record<string, string> = {
      [ENV.inputBucket]: input.bucketName,
      [ENV.workingBucket]: working.bucketName,
      [ENV.warehouseBucket]: warehouse.bucketName,
      [ENV.pipelinesDir]: BUNDLED_PIPELINES_DIR,
      [ENV.athenaDatabase]: props.glueDatabase,
      ...(props.s3ForcePathStyle ? { [ENV.s3ForcePathStyle]: 'true' } : {}),
      NODE_OPTIONS: '--enable-source-maps',
      // Powertools (functions/observability.ts): the stack's name on every log line and as the metrics' service dimension.
      [SERVICE_NAME_ENV]: this.serviceName,
    };
    const pipelinesInRepo = relative(props.repoRoot, props.pipelinesDir);

    const make = (spec: HandlerSpec, size: { memorySize: number; timeout: Duration; ephemeralStorageSize?: Size }) => {
      const name = spec.id;
      const entry = join(props.handlersDir, spec.entry);
      if (!existsSync(entry)) {
        throw new ConfigError(`handlersDir: the ${name} handler ${entry} does not exist (it must export "handler")`);
      }
      const bundling: BundlingOptions = {
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        banner: REQUIRE_SHIM,
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // Bundle the SDK version the lock file pins rather than whatever the runtime ships.
        bundleAwsSDK: true,
        environment: bundlingEnvironment(props.architecture),
        // The DuckDB native binding cannot be bundled: install it, for the functions' platform whatever the build host is.
        ...(spec.duckdb ? { nodeModules: ['@duckdb/node-api'] } : {}),
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir, outputDir) => [
            `cp -R "${join(inputDir, pipelinesInRepo)}" "${join(outputDir, 'pipelines')}"`,
          ],
        },
      };
      const logGroup = new LogGroup(this, `${name}Logs`, {
        retention: props.logRetention,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const role = new Role(this, `${name}Role`, {
        assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
        description: `Sluice ${name} handler`,
      });
      logGroup.grantWrite(role);
      return new NodejsFunction(this, name, {
        entry,
        handler: 'handler',
        projectRoot: props.repoRoot,
        depsLockFilePath: join(props.repoRoot, 'package-lock.json'),
        runtime: Runtime.NODEJS_24_X,
        architecture: LAMBDA_ARCHITECTURE[props.architecture],
        memorySize: size.memorySize,
        timeout: size.timeout,
        ...(size.ephemeralStorageSize ? { ephemeralStorageSize: size.ephemeralStorageSize } : {}),
        environment,
        bundling,
        logGroup,
        role,
        // Lambda's own lines (START, REPORT) and any console line as JSON too, next to Powertools' lines;
        // Powertools' Logger follows the application log level (AWS_LAMBDA_LOG_LEVEL).
        loggingFormat: LoggingFormat.JSON,
        applicationLogLevelV2: ApplicationLogLevel.INFO,
        systemLogLevelV2: SystemLogLevel.INFO,
      });
    };

    const entries = Object.entries(HANDLERS) as [HandlerName, HandlerSpec][];
    this.functions = Object.fromEntries(
      entries.map(([key, spec]) => [
        key,
        // The worker's size comes from the stack's props (their defaults are the catalog's).
        make(
          spec,
          key === 'work'
            ? props.worker
            : { memorySize: spec.memorySize, timeout: Duration.seconds(spec.timeoutSeconds) },
        ),
      ]),
    ) as Record<HandlerName, NodejsFunction>;
    ({
      plan: this.plan,
      work: this.work,
      verify: this.verify,
      finish: this.finish,
      recordFailure: this.recordFailure,
      lease: this.lease,
    } = this.functions);

    // Least privilege from the code: only Finish deletes (staging and rejects of its run).
    const grants: [NodejsFunction, IBucket, Access][] = [
      [this.plan, input, 'read'],
      [this.plan, working, 'read'],
      [this.plan, working, 'put'],
      [this.work, input, 'read'],
      [this.work, working, 'put'],
      // Verify checks that each input's planned version is still its current one (HeadObject, ListObjectsV2).
      [this.verify, input, 'read'],
      [this.verify, working, 'read'],
      [this.verify, working, 'put'],
      [this.finish, working, 'readWrite'],
      // RecordFailure reads the run record Plan wrote, to keep its inputs and start time.
      [this.recordFailure, working, 'read'],
      [this.recordFailure, working, 'put'],
    ];
    this.grantLease(working, props.stateMachineName);
    const wildcards = new Map<NodejsFunction, Set<string>>();
    for (const [fn, bucket, access] of grants) {
      GRANT[access](bucket, fn);
      const set = wildcards.get(fn) ?? new Set<string>();
      for (const finding of [resourceFinding(this, bucket.arnForObjects('*')), ...GRANT_WILDCARDS[access]]) {
        set.add(finding);
      }
      wildcards.set(fn, set);
    }
    for (const [fn, findings] of wildcards) {
      acknowledge(
        fn.role ?? fn,
        'AwsSolutions-IAM5',
        'CDK bucket grants: the objects of one Sluice bucket (keys are per run, unknown at deploy time), with the CDK grant action sets (GetObject*, GetBucket*, List*, Abort*; DeleteObject* for Finish only) on that bucket alone.',
        [...findings],
      );
    }
  }

  /**
   * The lease function reads, writes and deletes the lease objects and nothing else: no bucket
   * grant (whose action sets are wider), one statement on the lease prefix. A conditional delete
   * with an ETag needs s3:GetObject besides s3:DeleteObject
   * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html).
   */
  private grantLease(working: IBucket, stateMachineName: string): void {
    const leases = working.arnForObjects(`${LEASE_PREFIX}*`);
    this.lease.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], resources: [leases] }),
    );
    // Built from the name, not the state machine's attribute: the state machine names this function, so a
    // reference back would be a dependency cycle. DescribeExecution's resource is an execution ARN
    // (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html).
    const executions = Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    this.lease.addToRolePolicy(new PolicyStatement({ actions: ['states:DescribeExecution'], resources: [executions] }));
    acknowledge(
      this.lease.role ?? this.lease,
      'AwsSolutions-IAM5',
      "The lease objects of the working bucket (one per pipeline, named at run time), with GetObject, PutObject and DeleteObject only; DescribeExecution on the pipeline state machine's executions (named at run time), to see whether the lease's holder still runs.",
      [resourceFinding(this, leases), resourceFinding(this, executions)],
    );
  }

  get all(): NodejsFunction[] {
    return Object.values(this.functions);
  }
}
