import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Duration, RemovalPolicy, type Size } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ConfigError } from '../functions/errors.ts';
import { acknowledge, resourceFinding } from './nag.ts';

export interface HandlersProps {
  readonly repoRoot: string;
  readonly handlersDir: string;
  readonly pipelinesDir: string;
  readonly buckets: { readonly input: IBucket; readonly working: IBucket; readonly warehouse: IBucket };
  readonly glueDatabase: string;
  readonly logRetention: RetentionDays;
  readonly worker: { readonly memorySize: number; readonly timeout: Duration; readonly ephemeralStorageSize: Size };
}

interface FunctionOptions {
  /** Installs @duckdb/node-api (and its linux-arm64 binding) next to the bundle. */
  readonly duckdb: boolean;
  readonly memorySize: number;
  readonly timeout: Duration;
  readonly ephemeralStorageSize?: Size;
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

/**
 * The five Lambda handlers of the state machine, bundled with esbuild for Node 24 on arm64.
 * Each has its own role (logging to its own log group only, plus its bucket grants) instead of
 * AWSLambdaBasicExecutionRole, whose log permissions cover every log group of the account.
 */
export class Handlers extends Construct {
  readonly plan: NodejsFunction;
  readonly work: NodejsFunction;
  readonly verify: NodejsFunction;
  readonly finish: NodejsFunction;
  readonly recordFailure: NodejsFunction;

  constructor(scope: Construct, id: string, props: HandlersProps) {
    super(scope, id);
    const { input, working, warehouse } = props.buckets;
    const environment = {
      SLUICE_INPUT_BUCKET: input.bucketName,
      SLUICE_WORKING_BUCKET: working.bucketName,
      SLUICE_WAREHOUSE_BUCKET: warehouse.bucketName,
      SLUICE_PIPELINES_DIR: BUNDLED_PIPELINES_DIR,
      SLUICE_ATHENA_DATABASE: props.glueDatabase,
      NODE_OPTIONS: '--enable-source-maps',
    };
    const pipelinesInRepo = relative(props.repoRoot, props.pipelinesDir);

    const make = (name: string, file: string, options: FunctionOptions) => {
      const entry = join(props.handlersDir, file);
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
        ...(options.duckdb
          ? {
              // The DuckDB native binding cannot be bundled: install it, for linux-arm64 whatever the build host is.
              nodeModules: ['@duckdb/node-api'],
              environment: { npm_config_cpu: 'arm64', npm_config_os: 'linux' },
            }
          : {}),
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
        architecture: Architecture.ARM_64,
        memorySize: options.memorySize,
        timeout: options.timeout,
        ...(options.ephemeralStorageSize ? { ephemeralStorageSize: options.ephemeralStorageSize } : {}),
        environment,
        bundling,
        logGroup,
        role,
      });
    };

    this.plan = make('Plan', 'plan.ts', { duckdb: false, memorySize: 1024, timeout: Duration.minutes(10) });
    this.work = make('Work', 'work.ts', {
      duckdb: true,
      ...props.worker,
    });
    // Verify merges the chunks' rejects with DuckDB.
    this.verify = make('Verify', 'verify.ts', { duckdb: true, memorySize: 1769, timeout: Duration.minutes(10) });
    this.finish = make('Finish', 'finish.ts', { duckdb: false, memorySize: 512, timeout: Duration.minutes(5) });
    this.recordFailure = make('RecordFailure', 'record-failure.ts', {
      duckdb: false,
      memorySize: 256,
      timeout: Duration.minutes(1),
    });

    // Least privilege from the code: only Finish deletes (staging and rejects of its run).
    const grants: [NodejsFunction, IBucket, Access][] = [
      [this.plan, input, 'read'],
      [this.plan, working, 'read'],
      [this.plan, working, 'put'],
      [this.work, input, 'read'],
      [this.work, working, 'put'],
      [this.verify, working, 'read'],
      [this.verify, working, 'put'],
      [this.finish, working, 'readWrite'],
      // RecordFailure reads the run record Plan wrote, to keep its inputs and start time.
      [this.recordFailure, working, 'read'],
      [this.recordFailure, working, 'put'],
    ];
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

  get all(): NodejsFunction[] {
    return [this.plan, this.work, this.verify, this.finish, this.recordFailure];
  }
}
