import { join } from 'node:path';
import { CfnOutput, Duration, Fn, RemovalPolicy, Size, Stack, type StackProps, Token } from 'aws-cdk-lib';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { HANDLERS } from '../functions/catalog.ts';
import { ConfigError } from '../functions/errors.ts';
import { loadPipelines, type Pipeline } from '../functions/pipeline/definition.ts';
import { tableNames } from '../functions/pipeline/sql.ts';
import { FailureTopic } from './alerts.ts';
import { REPO_ROOT } from './asl.ts';
import { Handlers } from './handlers.ts';
import { Monitoring } from './monitoring.ts';
import { PipelineStateMachine } from './state-machine.ts';
import { Storage } from './storage.ts';
import {
  ARCHITECTURES,
  type CpuArchitecture,
  childExecutionType,
  hostArchitecture,
  TARGETS,
  type Target,
} from './target.ts';
import { Triggers } from './triggers.ts';
import { Warehouse } from './warehouse.ts';

export interface SluiceStackProps extends StackProps {
  /**
   * Folder of pipeline definitions (`*.yaml`); every one of them is deployed.
   * @default `pipelines/` of the repository
   */
  readonly pipelinesDir?: string;
  /**
   * The state machine definition, with `${...}` placeholders.
   * @default `state-machines/pipeline.asl.json` of the repository
   */
  readonly aslFile?: string;
  /**
   * Folder of the Lambda entry files (plan.ts, work.ts, verify.ts, finish.ts, record-failure.ts).
   * @default `functions/handlers/` of the repository
   */
  readonly handlersDir?: string;
  /**
   * Name of the state machine (1-80 characters of A-Z, a-z, 0-9, `-` and `_`).
   * @default `<stackName>-pipeline`
   */
  readonly stateMachineName?: string;
  /**
   * Name of the Glue database holding the tables. The database is retained when the stack is
   * deleted (with `dataRemovalPolicy` RETAIN), so a fixed name would make the next deploy of the
   * same stack fail on the existing database: the default is unique per stack instance.
   * @default `<stack name, lower case, other characters as _>_<last 12 hex digits of the stack id's UUID>`
   */
  readonly glueDatabaseName?: string;
  /**
   * Name of the Athena workgroup the loads run in.
   * @default `<stack name>-<last 12 hex digits of the stack id's UUID>` (unique per stack instance)
   */
  readonly athenaWorkGroupName?: string;
  /**
   * Where the stack is deployed: `localstack` runs Distributed Map children as STANDARD
   * executions (LocalStack's ASL grammar accepts nothing else) and the functions' S3 clients
   * path-style. See infra/target.ts and docs/localstack.md.
   * @default 'aws'
   */
  readonly target?: Target;
  /**
   * Architecture of the functions (and of DuckDB's native binding in their bundles).
   * @default 'arm64' on AWS; the build host's on LocalStack
   */
  readonly architecture?: CpuArchitecture;
  /**
   * The account grants Data Catalog access through Lake Formation: the state machine's Athena
   * queries then need `lakeformation:GetDataAccess`.
   * @default false
   */
  readonly lakeFormation?: boolean;
  /**
   * Athena cancels a query that scans more than this (at least 10 MB).
   * @default 10 GiB
   */
  readonly bytesScannedCutoffPerQuery?: Size;
  /**
   * Memory of the worker function, in MB (128-10240). 1769 MB is one full vCPU.
   * @default 1769
   */
  readonly workerMemorySize?: number;
  /**
   * Timeout of the worker function: at most 5 minutes, the limit of the EXPRESS child executions that run it.
   * @default Duration.minutes(2)
   */
  readonly workerTimeout?: Duration;
  /**
   * /tmp of the worker function (512 MiB-10 GiB): DuckDB spills there.
   * @default Size.gibibytes(4)
   */
  readonly workerEphemeralStorage?: Size;
  /**
   * What happens to the buckets and the Glue database when the stack is deleted.
   * DESTROY only succeeds for empty buckets (objects are never deleted for you).
   * @default RemovalPolicy.RETAIN
   */
  readonly dataRemovalPolicy?: RemovalPolicy;
  /**
   * Retention of the functions' and the state machine's logs.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Whether the pipelines' schedules fire (false deploys them disabled).
   * @default true
   */
  readonly schedulesEnabled?: boolean;
  /**
   * Email addresses subscribed to the failure topic (each must confirm).
   * @default none
   */
  readonly failureEmails?: readonly string[];
}

const EXPRESS_CHILD_LIMIT = Duration.minutes(5);
const DEFAULTS = {
  bytesScannedCutoffPerQuery: Size.gibibytes(10),
  workerMemorySize: HANDLERS.work.memorySize,
  // Well under the EXPRESS child's 5 minutes, so that retries of a worker fit in its execution.
  workerTimeout: Duration.seconds(HANDLERS.work.timeoutSeconds),
  workerEphemeralStorage: Size.gibibytes(4),
  dataRemovalPolicy: RemovalPolicy.RETAIN,
  logRetention: RetentionDays.ONE_MONTH,
  schedulesEnabled: true,
  failureEmails: [] as readonly string[],
} as const;

/**
 * Sluice on AWS: the buckets, the six functions, the state machine from the ASL file, the
 * Glue database and Athena workgroup, and per pipeline of `pipelines/` an object-created
 * rule and (when it has one) a schedule. Failures notify an SNS topic.
 */
export class SluiceStack extends Stack {
  readonly pipelines: ReadonlyMap<string, Pipeline>;

  constructor(scope: Construct, id: string, props: SluiceStackProps = {}) {
    super(scope, id, props);
    const settings = resolveSettings(this.stackName, props, stackInstanceSuffix(this));
    this.pipelines = settings.pipelines;

    const storage = new Storage(this, 'Storage', { removalPolicy: settings.dataRemovalPolicy });
    const warehouse = new Warehouse(this, 'Warehouse', {
      databaseName: settings.glueDatabaseName,
      workGroupName: settings.athenaWorkGroupName,
      workingBucket: storage.working,
      bytesScannedCutoffPerQuery: settings.bytesScannedCutoffPerQuery.toBytes(),
      removalPolicy: settings.dataRemovalPolicy,
    });
    const handlers = new Handlers(this, 'Handlers', {
      repoRoot: REPO_ROOT,
      handlersDir: settings.handlersDir,
      pipelinesDir: settings.pipelinesDir,
      buckets: storage,
      glueDatabase: warehouse.databaseName,
      stateMachineName: settings.stateMachineName,
      architecture: settings.architecture,
      s3ForcePathStyle: settings.target === 'localstack',
      logRetention: settings.logRetention,
      worker: {
        memorySize: settings.workerMemorySize,
        timeout: settings.workerTimeout,
        ephemeralStorageSize: settings.workerEphemeralStorage,
      },
    });
    const failures = new FailureTopic(this, 'Failures', { emails: settings.failureEmails });
    const pipeline = new PipelineStateMachine(this, 'Pipeline', {
      stateMachineName: settings.stateMachineName,
      aslFile: settings.aslFile,
      handlers,
      warehouse,
      workingBucket: storage.working,
      warehouseBucket: storage.warehouse,
      failureTopic: failures.topic,
      failureTopicKey: failures.key,
      logRetention: settings.logRetention,
      childExecutionType: childExecutionType(settings.target),
      lakeFormation: settings.lakeFormation,
    });
    const triggers = new Triggers(this, 'Triggers', {
      pipelines: [...settings.pipelines.values()],
      inputBucket: storage.input,
      stateMachine: pipeline.stateMachine,
      stateMachineArn: pipeline.stateMachineArn,
      schedulesEnabled: settings.schedulesEnabled,
    });
    failures.alarmOn(triggers.deadLetterQueue);
    const monitoring = new Monitoring(this, 'Monitoring', {
      stateMachine: pipeline.stateMachine,
      worker: handlers.work,
      workGroupName: warehouse.workGroupName,
      pipelines: [...settings.pipelines.values()],
      service: handlers.serviceName,
      notify: (alarm) => failures.notifyOn(alarm),
    });

    const outputs: Record<string, [string, string]> = {
      InputBucketName: [storage.input.bucketName, 'Upload pipeline inputs here'],
      WorkingBucketName: [storage.working.bucketName, 'Manifests, staging, rejects, run records, Athena results'],
      WarehouseBucketName: [storage.warehouse.bucketName, 'Iceberg table data'],
      AccessLogsBucketName: [storage.accessLogs.bucketName, 'S3 server access logs of the other buckets'],
      StateMachineArn: [pipeline.stateMachine.stateMachineArn, 'Start runs here (RunRequest input)'],
      FailureTopicArn: [failures.topic.topicArn, 'Failed runs are published here'],
      AthenaWorkGroup: [warehouse.workGroupName, 'Query the tables in this workgroup'],
      GlueDatabase: [warehouse.databaseName, 'Database of the tables'],
      DeadLetterQueueUrl: [triggers.deadLetterQueue.queueUrl, 'Trigger events that could not start a run'],
      DashboardName: [monitoring.dashboard.dashboardName, 'CloudWatch dashboard of the runs, rows, worker and Athena'],
    };
    for (const [name, [value, description]] of Object.entries(outputs)) {
      new CfnOutput(this, name, { value, description });
    }
  }
}

interface Settings {
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly pipelinesDir: string;
  readonly aslFile: string;
  readonly handlersDir: string;
  readonly stateMachineName: string;
  readonly glueDatabaseName: string;
  readonly athenaWorkGroupName: string;
  readonly bytesScannedCutoffPerQuery: Size;
  readonly workerMemorySize: number;
  readonly workerTimeout: Duration;
  readonly workerEphemeralStorage: Size;
  readonly dataRemovalPolicy: RemovalPolicy;
  readonly logRetention: RetentionDays;
  readonly schedulesEnabled: boolean;
  readonly failureEmails: readonly string[];
  readonly target: Target;
  readonly architecture: CpuArchitecture;
  readonly lakeFormation: boolean;
}

/**
 * The last group of the stack id's UUID (12 hex digits), as a token: `AWS::StackId` is
 * `arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>`, new for every instance of the
 * stack. Names built from it do not collide with what a destroyed instance left behind.
 */
export function stackInstanceSuffix(stack: Stack): string {
  return Fn.select(4, Fn.split('-', Fn.select(2, Fn.split('/', stack.stackId))));
}

/** Length of {@link stackInstanceSuffix} once deployed. */
const SUFFIX_LENGTH = 12;

/** Applies the defaults once and rejects invalid props, naming them. */
export function resolveSettings(stackName: string, props: SluiceStackProps, instanceSuffix: string): Settings {
  const pipelinesDir = props.pipelinesDir ?? join(REPO_ROOT, 'pipelines');
  const stateMachineName = props.stateMachineName ?? `${stackName}-pipeline`;
  const target = props.target ?? 'aws';
  const databasePrefix = stackName.toLowerCase().replace(/[^a-z0-9]/g, '_');
  const s: Settings = {
    pipelinesDir,
    pipelines: loadPipelines(pipelinesDir),
    aslFile: props.aslFile ?? join(REPO_ROOT, 'state-machines', 'pipeline.asl.json'),
    handlersDir: props.handlersDir ?? join(REPO_ROOT, 'functions', 'handlers'),
    stateMachineName,
    glueDatabaseName: props.glueDatabaseName ?? `${databasePrefix}_${instanceSuffix}`,
    athenaWorkGroupName: props.athenaWorkGroupName ?? `${stackName}-${instanceSuffix}`,
    bytesScannedCutoffPerQuery: props.bytesScannedCutoffPerQuery ?? DEFAULTS.bytesScannedCutoffPerQuery,
    workerMemorySize: props.workerMemorySize ?? DEFAULTS.workerMemorySize,
    workerTimeout: props.workerTimeout ?? DEFAULTS.workerTimeout,
    workerEphemeralStorage: props.workerEphemeralStorage ?? DEFAULTS.workerEphemeralStorage,
    dataRemovalPolicy: props.dataRemovalPolicy ?? DEFAULTS.dataRemovalPolicy,
    logRetention: props.logRetention ?? DEFAULTS.logRetention,
    schedulesEnabled: props.schedulesEnabled ?? DEFAULTS.schedulesEnabled,
    failureEmails: props.failureEmails ?? DEFAULTS.failureEmails,
    target,
    architecture: props.architecture ?? (target === 'localstack' ? hostArchitecture() : 'arm64'),
    lakeFormation: props.lakeFormation ?? false,
  };
  // A default name holds the suffix token: check it as it will be once deployed.
  const deployed = (name: string) =>
    Token.isUnresolved(name) ? name.replace(instanceSuffix, '0'.repeat(SUFFIX_LENGTH)) : name;

  const problems: string[] = [];
  if (s.pipelines.size === 0) problems.push(`pipelinesDir: ${pipelinesDir} holds no *.yaml pipeline`);
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(s.stateMachineName)) {
    problems.push(
      props.stateMachineName === undefined
        ? `stateMachineName: the default "${stateMachineName}" (from the stack name) is not 1-80 characters of A-Z, a-z, 0-9, - and _; set stateMachineName or use a shorter stack name`
        : `stateMachineName: "${stateMachineName}" is not 1-80 characters of A-Z, a-z, 0-9, - and _`,
    );
  }
  if (!/^[a-z0-9_]{1,255}$/.test(deployed(s.glueDatabaseName))) {
    problems.push(`glueDatabaseName: "${s.glueDatabaseName}" is not 1-255 characters of a-z, 0-9 and _`);
  }
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(deployed(s.athenaWorkGroupName))) {
    problems.push(
      props.athenaWorkGroupName === undefined
        ? `athenaWorkGroupName: the default "${stackName}-<12 characters of the stack id>" is longer than 128 characters; set athenaWorkGroupName or use a shorter stack name`
        : `athenaWorkGroupName: "${s.athenaWorkGroupName}" is not 1-128 characters of A-Z, a-z, 0-9, ., - and _`,
    );
  }
  if (!TARGETS.includes(s.target)) problems.push(`target: "${s.target}" is not one of ${TARGETS.join(', ')}`);
  if (!ARCHITECTURES.includes(s.architecture)) {
    problems.push(`architecture: "${s.architecture}" is not one of ${ARCHITECTURES.join(', ')}`);
  }
  if (s.bytesScannedCutoffPerQuery.toBytes() < 10_000_000) {
    problems.push('bytesScannedCutoffPerQuery: Athena needs at least 10 MB');
  }
  if (!Number.isInteger(s.workerMemorySize) || s.workerMemorySize < 128 || s.workerMemorySize > 10240) {
    problems.push(`workerMemorySize: ${s.workerMemorySize} is not a whole number of MB in 128-10240`);
  }
  const timeout = s.workerTimeout.toSeconds();
  if (timeout < 1 || timeout > EXPRESS_CHILD_LIMIT.toSeconds()) {
    problems.push(
      `workerTimeout: ${s.workerTimeout.toHumanString()} is not in 1 second-5 minutes (workers run in EXPRESS child executions, which stop at 5 minutes)`,
    );
  }
  const tmp = s.workerEphemeralStorage.toMebibytes();
  if (tmp < 512 || tmp > 10240) problems.push(`workerEphemeralStorage: ${tmp} MiB is not in 512 MiB-10 GiB`);
  for (const email of s.failureEmails) {
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) problems.push(`failureEmails: "${email}" is not an email address`);
  }
  problems.push(...overlappingInputs([...s.pipelines.values()]), ...sharedTables([...s.pipelines.values()]));
  if (problems.length > 0) throw new ConfigError(`invalid SluiceStack props:\n  ${problems.join('\n  ')}`);
  return s;
}

/** Two pipelines must not both claim an object: each upload would start two runs. */
function overlappingInputs(pipelines: readonly Pipeline[]): string[] {
  const problems: string[] = [];
  for (const [i, a] of pipelines.entries()) {
    for (const b of pipelines.slice(i + 1)) {
      const prefixes = a.input.prefix.startsWith(b.input.prefix) || b.input.prefix.startsWith(a.input.prefix);
      const suffix = a.input.suffixes.find((x) => b.input.suffixes.some((y) => x.endsWith(y) || y.endsWith(x)));
      if (prefixes && suffix !== undefined) {
        problems.push(
          `pipelinesDir: pipelines ${a.name} (${a.file}) and ${b.name} (${b.file}) both take objects under ${a.input.prefix.length > b.input.prefix.length ? a.input.prefix : b.input.prefix} ending in ${suffix}`,
        );
      }
    }
  }
  return problems;
}

/** All pipelines share one Glue database: a table name used twice would mix two pipelines' rows. */
function sharedTables(pipelines: readonly Pipeline[]): string[] {
  const owner = new Map<string, Pipeline>();
  const problems: string[] = [];
  for (const p of pipelines) {
    for (const table of [...Object.values(tableNames(p)), ...p.derived.map((d) => d.name)]) {
      const other = owner.get(table);
      if (other && other !== p) {
        problems.push(
          `pipelinesDir: pipelines ${other.name} (${other.file}) and ${p.name} (${p.file}) both use table ${table}`,
        );
      }
      owner.set(table, p);
    }
  }
  return problems;
}
