/**
 * The Step Functions API of the embedded runtime (AWS JSON 1.0, `X-Amz-Target: AWSStepFunctions.<Op>`),
 * in AWS's shapes, ARNs and errors, over the runtime's one state machine and its execution records:
 * ListStateMachines, DescribeStateMachine, StartExecution, DescribeExecution, ListExecutions,
 * StopExecution, GetExecutionHistory, RedriveExecution, ListMapRuns and DescribeMapRun.
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_Operations.html
 *
 * - The state machine is `sluice-pipeline` (STANDARD) in account 000000000000, us-east-1; its
 *   executions are `arn:aws:states:us-east-1:000000000000:execution:sluice-pipeline:<name>`.
 * - Timestamps are epoch seconds (numbers, with milliseconds as the fraction), as the JSON protocol sends them.
 * - StartExecution answers at once; the execution runs in the background. A name already used
 *   answers ExecutionAlreadyExists, except for an open execution started with the same input, which
 *   is answered again (StartExecution is idempotent for STANDARD workflows).
 * - GetExecutionHistory reads the events the runtime appends as they happen (`history.ts`), so a
 *   process beside the one running the execution sees them; RedriveExecution follows AWS as far as
 *   the local interpreter allows (`redrive-execution.ts` says where it does not).
 * - Map runs are the Distributed Map runs of the executions; ListExecutions with a mapRunArn lists
 *   its children once the run has ended (their states are not recorded: DescribeExecution of a
 *   child answers ExecutionDoesNotExist).
 * - Other operations answer UnknownOperationException.
 */
import { AwsApiError, type AwsJsonHandler } from './aws-api.ts';
import type { Json } from './distributed-map.ts';
import {
  ExecutionExistsError,
  type ExecutionRecord,
  isExecutionName,
  newExecutionName,
  newestFirst,
} from './executions.ts';
import { type HistoryEvent, type MapRunRecord, readHistory } from './history.ts';
import type { LocalRuntime } from './local-runtime.ts';
import { ExecutionNotRedrivableError, redriveStatus } from './redrive-execution.ts';

export const SFN_REGION = 'us-east-1';
export const SFN_ACCOUNT = '000000000000';
/** The state machine's name, as the stack names it locally. */
export const STATE_MACHINE_NAME = 'sluice-pipeline';
export const STATE_MACHINE_ARN = `arn:aws:states:${SFN_REGION}:${SFN_ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`;
/** The role the state machine runs as (`$$.Execution.RoleArn` locally). */
const STATE_MACHINE_ROLE_ARN = `arn:aws:iam::${SFN_ACCOUNT}:role/sluice-local`;

export const executionArn = (name: string) =>
  `arn:aws:states:${SFN_REGION}:${SFN_ACCOUNT}:execution:${STATE_MACHINE_NAME}:${name}`;

/** Step Functions' limit on an execution's input: 256 KiB, UTF-8 encoded. */
const MAX_INPUT_BYTES = 256 * 1024;
/** How long StopExecution waits for the execution's ABORTED record before it answers anyway. */
const STOP_WAIT_MS = 5000;

const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED', 'PENDING_REDRIVE'] as const;

/** `arn:<partition>:states:<region>:<account>:<resource type>:<name>[:<name>]`. */
const ARN =
  /^arn:aws[a-z-]*:states:([a-z0-9-]+):(\d{12}):(stateMachine|execution|express|mapRun):([^:]+)(?::([^:]+))?$/;

const seconds = (iso: string) => Date.parse(iso) / 1000;

/** A value as an error message quotes it: at most 256 characters. */
const shown = (text: string) => (text.length > 256 ? `${text.slice(0, 256)}…` : text);

const validation = (message: string) => new AwsApiError('ValidationException', message);

function requiredString(input: Record<string, unknown>, member: string): string {
  const value = input[member];
  if (value === undefined || value === null) {
    throw validation(
      `1 validation error detected: Value null at '${member}' failed to satisfy constraint: Member must not be null`,
    );
  }
  if (typeof value !== 'string') throw new AwsApiError('SerializationException', `'${member}' must be a string`);
  return value;
}

function optionalString(input: Record<string, unknown>, member: string): string | undefined {
  const value = input[member];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new AwsApiError('SerializationException', `'${member}' must be a string`);
  return value;
}

function parseArn(arn: string) {
  const match = ARN.exec(arn);
  if (!match || arn.length > 256) throw new AwsApiError('InvalidArn', `Invalid Arn: '${shown(arn)}'`);
  const [, region, account, type, first, second] = match;
  return { region, account, type, first, second };
}

/** The state machine's ARN must be this runtime's: a malformed one is InvalidArn, another one does not exist. */
function checkStateMachineArn(arn: string): void {
  const { type, second } = parseArn(arn);
  if (type !== 'stateMachine')
    throw new AwsApiError('InvalidArn', `Invalid Arn: 'Resource type not valid in this context: ${type}'`);
  // A version or alias (`...:stateMachine:<name>:<qualifier>`) is not published locally.
  if (arn !== STATE_MACHINE_ARN || second !== undefined) {
    throw new AwsApiError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
  }
}

/** The execution's record, by its ARN: a malformed ARN is InvalidArn, an unknown execution ExecutionDoesNotExist. */
function executionOf(runtime: LocalRuntime, arn: string): ExecutionRecord {
  const { region, account, type, first, second } = parseArn(arn);
  if (type === 'stateMachine' || type === 'mapRun')
    throw new AwsApiError('InvalidArn', `Invalid Arn: 'Resource type not valid in this context: ${type}'`);
  if (second === undefined) throw new AwsApiError('InvalidArn', `Invalid Arn: '${arn}'`);
  const record =
    type === 'execution' && region === SFN_REGION && account === SFN_ACCOUNT && first === STATE_MACHINE_NAME
      ? runtime.executions.read(second)
      : undefined;
  if (!record) throw new AwsApiError('ExecutionDoesNotExist', `Execution Does Not Exist: '${arn}'`);
  return record;
}

/** An ExecutionListItem. */
const listItem = (record: ExecutionRecord) => ({
  executionArn: executionArn(record.id),
  stateMachineArn: STATE_MACHINE_ARN,
  name: record.id,
  status: record.status,
  startDate: seconds(record.startedAt),
  ...(record.stoppedAt ? { stopDate: seconds(record.stoppedAt) } : {}),
  ...(record.redriveCount ? { redriveCount: record.redriveCount } : {}),
  ...(record.redriveDate ? { redriveDate: seconds(record.redriveDate) } : {}),
});

/** DescribeExecution's output. */
function describeExecution(runtime: LocalRuntime, record: ExecutionRecord) {
  return {
    ...listItem(record),
    redriveCount: record.redriveCount ?? 0,
    ...redriveStatus(record, runtime.executions.folder),
    input: JSON.stringify(record.input ?? null),
    inputDetails: { included: true },
    ...(record.status === 'SUCCEEDED'
      ? { output: JSON.stringify(record.output ?? null), outputDetails: { included: true } }
      : {}),
    ...(record.status === 'FAILED' || record.status === 'ABORTED' || record.status === 'TIMED_OUT'
      ? {
          ...(record.error !== null ? { error: record.error } : {}),
          ...(record.cause !== null ? { cause: record.cause } : {}),
        }
      : {}),
  };
}

/** The definition as Step Functions returns it: the ASL file's JSON with the local values substituted. */
function definitionText(runtime: LocalRuntime): string {
  const { Comment, ...rest } = runtime.stateMachine.definition;
  return JSON.stringify(Comment === undefined ? rest : { Comment, ...rest }, null, 2);
}

/** ListExecutions' nextToken: where the next page starts (after this execution, newest first) and the filter it was made for. */
interface PageToken {
  readonly startedAt: string;
  readonly id: string;
  readonly filter: string | null;
}

const encodeToken = (token: PageToken) => Buffer.from(JSON.stringify(token)).toString('base64url');

function decodeToken(text: string, filter: string | null): PageToken {
  try {
    const token = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as PageToken;
    if (typeof token.startedAt === 'string' && typeof token.id === 'string' && token.filter === filter) return token;
  } catch {
    // below
  }
  throw new AwsApiError('InvalidToken', `Invalid Token: '${text.slice(0, 100)}'`);
}

function maxResultsOf(input: Record<string, unknown>): number {
  const value = input.maxResults ?? 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 1000) {
    throw validation(
      `1 validation error detected: Value '${String(value)}' at 'maxResults' failed to satisfy constraint: ` +
        'Member must have value less than or equal to 1000 and greater than or equal to 0',
    );
  }
  // 0 means the default, as on AWS.
  return value === 0 ? 100 : value;
}

async function stopExecution(runtime: LocalRuntime, input: Record<string, unknown>) {
  const record = executionOf(runtime, requiredString(input, 'executionArn'));
  const error = optionalString(input, 'error');
  const cause = optionalString(input, 'cause');
  if (error !== undefined && error.length > 256) throw validation("'error' must be at most 256 characters");
  if (cause !== undefined && cause.length > 32768) throw validation("'cause' must be at most 32768 characters");
  // A closed execution stays as it ended.
  if (record.status !== 'RUNNING') return { stopDate: seconds(record.stoppedAt ?? record.startedAt) };
  const done = runtime.stopExecution(record.id, {
    ...(error !== undefined ? { error } : {}),
    ...(cause !== undefined ? { cause } : {}),
  });
  if (!done) {
    // It ended meanwhile; or it runs in another process (`sluice run` beside `sluice dev`), which alone can abort it.
    const now = runtime.executions.read(record.id);
    if (now && now.status !== 'RUNNING') return { stopDate: seconds(now.stoppedAt ?? now.startedAt) };
    throw validation(
      `the execution ${record.id} is run by another process (pid ${record.pid}) and cannot be stopped here`,
    );
  }
  let timer: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    done,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), STOP_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  return { stopDate: finished?.stoppedAt ? seconds(finished.stoppedAt) : Date.now() / 1000 };
}

function startExecution(runtime: LocalRuntime, input: Record<string, unknown>) {
  checkStateMachineArn(requiredString(input, 'stateMachineArn'));
  const text = optionalString(input, 'input') ?? '{}';
  if (Buffer.byteLength(text, 'utf8') > MAX_INPUT_BYTES) {
    throw validation(
      "1 validation error detected: Value at 'input' failed to satisfy constraint: Member must have length less than or equal to 262144",
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new AwsApiError(
      'InvalidExecutionInput',
      `Invalid State Machine Execution Input: '${(error as Error).message}'`,
    );
  }
  const given = optionalString(input, 'name');
  if (given !== undefined && !isExecutionName(given)) {
    throw new AwsApiError(
      'InvalidName',
      `Invalid Name: '${shown(given)}' (an execution name is 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_')`,
    );
  }
  const fields = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { pipeline?: unknown };
  const name = given ?? newExecutionName(typeof fields.pipeline === 'string' ? fields.pipeline : '');
  const started = (record: ExecutionRecord) => ({
    executionArn: executionArn(record.id),
    startDate: seconds(record.startedAt),
  });
  const alreadyExists = () =>
    new AwsApiError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn(name)}'`);
  const existing = runtime.executions.read(name);
  if (existing) {
    // The same request again while the execution is open gets the same answer; anything else is refused.
    if (existing.status === 'RUNNING' && JSON.stringify(existing.input) === JSON.stringify(parsed))
      return started(existing);
    throw alreadyExists();
  }
  let execution: Promise<ExecutionRecord>;
  try {
    execution = runtime.startExecution(parsed as Json, { name });
  } catch (error) {
    if (error instanceof ExecutionExistsError) throw alreadyExists();
    throw error;
  }
  // It runs in the background; its records say how it ends.
  void execution.catch(() => undefined);
  const record = runtime.executions.read(name);
  if (!record) throw new AwsApiError('InternalServerException', `the execution ${name} has no record`, 500);
  return started(record);
}

function listExecutions(runtime: LocalRuntime, input: Record<string, unknown>) {
  const mapRunArn = optionalString(input, 'mapRunArn');
  const stateMachineArn = optionalString(input, 'stateMachineArn');
  if (mapRunArn !== undefined && stateMachineArn !== undefined) {
    throw validation('Must provide only one of StateMachine ARN or MapRun ARN');
  }
  if (mapRunArn !== undefined) return listChildExecutions(mapRunOf(runtime, mapRunArn), input);
  if (stateMachineArn === undefined) throw validation('Must provide a StateMachine ARN or MapRun ARN');
  checkStateMachineArn(stateMachineArn);
  const filter = optionalString(input, 'statusFilter') ?? null;
  if (filter !== null && !(STATUSES as readonly string[]).includes(filter)) {
    throw validation(
      `1 validation error detected: Value '${filter}' at 'statusFilter' failed to satisfy constraint: ` +
        `Member must satisfy enum value set: [${STATUSES.join(', ')}]`,
    );
  }
  const redriveFilter = optionalString(input, 'redriveFilter');
  if (redriveFilter !== undefined && redriveFilter !== 'REDRIVEN' && redriveFilter !== 'NOT_REDRIVEN') {
    throw validation(
      `1 validation error detected: Value '${redriveFilter}' at 'redriveFilter' failed to satisfy constraint: ` +
        'Member must satisfy enum value set: [REDRIVEN, NOT_REDRIVEN]',
    );
  }
  const maxResults = maxResultsOf(input);
  const nextToken = optionalString(input, 'nextToken');
  const after = nextToken !== undefined ? decodeToken(nextToken, filter) : undefined;
  const matching = runtime.executions
    .list()
    .filter((record) => filter === null || record.status === filter)
    .filter(
      (record) => redriveFilter === undefined || (redriveFilter === 'REDRIVEN') === (record.redriveCount ?? 0) > 0,
    )
    .filter((record) => after === undefined || newestFirst(after, record) < 0);
  const page = matching.slice(0, maxResults);
  const last = page.at(-1);
  return {
    executions: page.map(listItem),
    ...(matching.length > maxResults && last
      ? { nextToken: encodeToken({ startedAt: last.startedAt, id: last.id, filter }) }
      : {}),
  };
}

/** A page of `items` from the offset in `nextToken` (an opaque token bound to `what`), `maxResults` long. */
function pageOf<T>(items: readonly T[], input: Record<string, unknown>, what: string) {
  const maxResults = maxResultsOf(input);
  const nextToken = optionalString(input, 'nextToken');
  let offset = 0;
  if (nextToken !== undefined) {
    try {
      const token = JSON.parse(Buffer.from(nextToken, 'base64url').toString('utf8')) as {
        offset?: unknown;
        what?: unknown;
      };
      if (token.what !== what || typeof token.offset !== 'number' || !Number.isInteger(token.offset)) throw new Error();
      offset = token.offset;
    } catch {
      throw new AwsApiError('InvalidToken', `Invalid Token: '${nextToken.slice(0, 100)}'`);
    }
  }
  const end = offset + maxResults;
  return {
    page: items.slice(offset, end),
    ...(end < items.length
      ? { nextToken: Buffer.from(JSON.stringify({ offset: end, what })).toString('base64url') }
      : {}),
  };
}

/** An event as GetExecutionHistory returns it: epoch seconds, no local fields, execution data only if asked for. */
function historyEvent(event: HistoryEvent, includeData: boolean) {
  const { iterationOf: _local, timestamp, ...rest } = event;
  const shown: Record<string, unknown> = { ...rest, timestamp: timestamp / 1000 };
  if (includeData) return shown;
  for (const [key, value] of Object.entries(shown)) {
    if (!key.endsWith('EventDetails') || typeof value !== 'object' || value === null) continue;
    const { input: _input, output: _output, parameters: _parameters, ...kept } = value as Record<string, unknown>;
    shown[key] = kept;
  }
  return shown;
}

/** GetExecutionHistory: https://docs.aws.amazon.com/step-functions/latest/apireference/API_GetExecutionHistory.html */
function executionHistory(runtime: LocalRuntime, input: Record<string, unknown>) {
  const arn = requiredString(input, 'executionArn');
  const record = executionOf(runtime, arn);
  const reverse = input.reverseOrder === true;
  const includeData = input.includeExecutionData !== false;
  const events = readHistory(runtime.executions.folder, record.id);
  const ordered = reverse ? events.reverse() : events;
  const { page, nextToken } = pageOf(ordered, input, `${record.id}:${reverse}`);
  return { events: page.map((event) => historyEvent(event, includeData)), ...(nextToken ? { nextToken } : {}) };
}

/** RedriveExecution: https://docs.aws.amazon.com/step-functions/latest/apireference/API_RedriveExecution.html */
function redriveExecution(runtime: LocalRuntime, input: Record<string, unknown>) {
  const record = executionOf(runtime, requiredString(input, 'executionArn'));
  const clientToken = optionalString(input, 'clientToken');
  if (clientToken !== undefined && (clientToken.length < 1 || clientToken.length > 64)) {
    throw validation("'clientToken' must be 1 to 64 characters");
  }
  try {
    const { redriveDate, done } = runtime.redriveExecution(record, clientToken !== undefined ? { clientToken } : {});
    void done?.catch(() => undefined);
    return { redriveDate: seconds(redriveDate) };
  } catch (error) {
    if (error instanceof ExecutionNotRedrivableError) throw new AwsApiError('ExecutionNotRedrivable', error.message);
    throw error;
  }
}

/** The map run of an ARN: a malformed one is InvalidArn, an unknown one ResourceNotFound. */
function mapRunOf(runtime: LocalRuntime, arn: string): MapRunRecord {
  const { type } = parseArn(arn);
  if (type !== 'mapRun')
    throw new AwsApiError('InvalidArn', `Invalid Arn: 'Resource type not valid in this context: ${type}'`);
  const record = runtime.mapRuns.read(arn);
  if (!record) throw new AwsApiError('ResourceNotFound', `Resource Not Found: '${arn}'`);
  return record;
}

/** DescribeMapRun: https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeMapRun.html */
function describeMapRun(run: MapRunRecord) {
  const { counts } = run;
  const executionCounts = {
    pending: counts.pending,
    running: counts.running,
    succeeded: counts.succeeded,
    failed: counts.failed,
    timedOut: counts.timedOut,
    aborted: counts.aborted,
    total: counts.total,
    resultsWritten: counts.resultsWritten,
    failuresNotRedrivable: 0,
    pendingRedrive: 0,
  };
  return {
    mapRunArn: run.mapRunArn,
    executionArn: executionArn(run.executionName),
    status: run.status,
    startDate: seconds(run.startDate),
    ...(run.stopDate ? { stopDate: seconds(run.stopDate) } : {}),
    maxConcurrency: run.maxConcurrency,
    toleratedFailurePercentage: run.toleratedFailurePercentage,
    toleratedFailureCount: run.toleratedFailureCount,
    itemCounts: executionCounts,
    executionCounts,
    redriveCount: 0,
  };
}

/** ListMapRuns: https://docs.aws.amazon.com/step-functions/latest/apireference/API_ListMapRuns.html */
function listMapRuns(runtime: LocalRuntime, input: Record<string, unknown>) {
  const record = executionOf(runtime, requiredString(input, 'executionArn'));
  const runs = runtime.mapRuns.list(record.id);
  const { page, nextToken } = pageOf(runs, input, `mapRuns:${record.id}`);
  return {
    mapRuns: page.map((run) => ({
      executionArn: executionArn(record.id),
      mapRunArn: run.mapRunArn,
      stateMachineArn: STATE_MACHINE_ARN,
      startDate: seconds(run.startDate),
      ...(run.stopDate ? { stopDate: seconds(run.stopDate) } : {}),
    })),
    ...(nextToken ? { nextToken } : {}),
  };
}

/** ListExecutions of a map run: its children that ended, as ExecutionListItems with the map run's ARN. */
function listChildExecutions(run: MapRunRecord, input: Record<string, unknown>) {
  const filter = optionalString(input, 'statusFilter');
  const children = (run.children ?? []).filter((child) => filter === undefined || child.status === filter);
  const childMachine = run.mapRunArn.replace(':mapRun:', ':stateMachine:').replace(/:[^:]+$/, '');
  const { page, nextToken } = pageOf(children, input, `children:${run.mapRunArn}:${filter ?? ''}`);
  return {
    executions: page.map((child) => ({
      executionArn: child.executionArn,
      stateMachineArn: childMachine,
      name: child.name,
      status: child.status,
      startDate: seconds(child.startDate),
      stopDate: seconds(child.stopDate),
      mapRunArn: run.mapRunArn,
    })),
    ...(nextToken ? { nextToken } : {}),
  };
}

/** The Step Functions API over the runtime's state machine and executions. */
export function stepFunctionsApi(runtime: LocalRuntime): AwsJsonHandler {
  return async (operation, input) => {
    switch (operation) {
      case 'ListStateMachines': {
        if (optionalString(input, 'nextToken') !== undefined) {
          throw new AwsApiError('InvalidToken', `Invalid Token: '${String(input.nextToken).slice(0, 100)}'`);
        }
        maxResultsOf(input);
        return {
          stateMachines: [
            {
              stateMachineArn: STATE_MACHINE_ARN,
              name: STATE_MACHINE_NAME,
              type: 'STANDARD',
              creationDate: runtime.stateMachine.createdAt.getTime() / 1000,
            },
          ],
        };
      }
      case 'DescribeStateMachine':
        checkStateMachineArn(requiredString(input, 'stateMachineArn'));
        return {
          stateMachineArn: STATE_MACHINE_ARN,
          name: STATE_MACHINE_NAME,
          status: 'ACTIVE',
          definition: definitionText(runtime),
          roleArn: STATE_MACHINE_ROLE_ARN,
          type: 'STANDARD',
          creationDate: runtime.stateMachine.createdAt.getTime() / 1000,
          loggingConfiguration: { level: 'OFF', includeExecutionData: false },
          tracingConfiguration: { enabled: false },
        };
      case 'StartExecution':
        return startExecution(runtime, input);
      case 'DescribeExecution':
        return describeExecution(runtime, executionOf(runtime, requiredString(input, 'executionArn')));
      case 'GetExecutionHistory':
        return executionHistory(runtime, input);
      case 'RedriveExecution':
        return redriveExecution(runtime, input);
      case 'ListMapRuns':
        return listMapRuns(runtime, input);
      case 'DescribeMapRun':
        return describeMapRun(mapRunOf(runtime, requiredString(input, 'mapRunArn')));
      case 'ListExecutions':
        return listExecutions(runtime, input);
      case 'StopExecution':
        return stopExecution(runtime, input);
      default:
        throw new AwsApiError(
          'UnknownOperationException',
          `${operation} is not served by the embedded runtime yet`,
          400,
        );
    }
  };
}
