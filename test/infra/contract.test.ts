/**
 * Ties `state-machines/pipeline.asl.json` to the TypeScript contracts, so that a name or a path
 * spelled differently in the two fails here instead of in a deployed run:
 *
 * - every error name of the ASL (Retry/Catch lists, Fail states, FailureDefaults) is a documented
 *   States.* / Lambda.* / Athena.* name, a Sluice error class's `name`, or an ASL-only name of
 *   the catalog;
 * - every placeholder of the ASL is in the catalog, and the other way round;
 * - every JSONPath the ASL reads resolves: the definition is walked from its start with typed
 *   samples of the contracts (functions/contracts.ts) as the execution input and the task results,
 *   following InputPath, Parameters, ResultSelector, ResultPath and OutputPath the way Step Functions
 *   applies them, through every Choice branch and Catch, into Map and Parallel states.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ALL_PLACEHOLDERS, ASL_ERROR_NAMES, HANDLERS, type HandlerName } from '../../functions/catalog.ts';
import type {
  Chunk,
  ChunkSummary,
  PlanEvent,
  RunRecord,
  RunRequest,
  RunState,
  VerifyResult,
} from '../../functions/contracts.ts';
import * as errors from '../../functions/errors.ts';
import type { LeaseEvent, LeaseOutput } from '../../functions/handlers/lease.ts';
import * as leaseErrors from '../../functions/lease/lease.ts';
import type { FailureEvent, FailureOutput } from '../../functions/run/record-failure.ts';
import { aslPlaceholders } from '../../infra/asl.ts';
import { ASL_FILE } from './fixture.ts';

const aslText = readFileSync(ASL_FILE, 'utf8');
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type State = Record<string, Json> & { Type: string };
interface Machine {
  readonly StartAt: string;
  readonly States: Record<string, State>;
}
const asl = JSON.parse(aslText) as Machine;

// --- samples of the contracts at each point of the state machine -------------------------

const runId = 'run-20260301-0001';
const startedAt = '2026-03-01T11:00:00.000Z';
const runRequest = { pipeline: 'access-logs', trigger: 'schedule' } satisfies RunRequest;
const runState = {
  runId,
  pipeline: 'access-logs',
  trigger: 'schedule',
  startedAt,
  manifest: { bucket: 'sluice-working', key: `manifests/access-logs/${runId}.json` },
  chunks: 2,
  inputs: 1,
  bytes: 2048,
  maxConcurrency: 10,
  toleratedFailurePercentage: 0,
  setup: [],
  setupHash: 'abc',
  // Every optional field, so that the ASL is checked against all of them (no one run has them all).
  remove: 'access-logs/a.csv',
  window: { from: '2026-02-01', to: '2026-02-28' },
  reload: true,
  redriveOf: 'run-20260228-0001',
} satisfies Required<RunState>;
const chunk = {
  runId,
  pipeline: 'access-logs',
  index: 0,
  parts: [{ key: 'access-logs/a.csv', version: 'etag', size: 2048, start: 0, end: 1024, compression: 'none' }],
  columns: ['ts', 'path', 'status'],
} satisfies Required<Chunk>;
const chunkSummary = { index: 0, rowsRead: 10, rowsStaged: 9, rowsRejected: 1 } satisfies Required<ChunkSummary>;
const verifyResult = {
  statements: [{ step: 'load', sql: 'MERGE INTO "access_logs" ...' }],
  summary: {
    chunks: 2,
    chunksFailed: 0,
    inputs: 1,
    rowsRead: 10,
    rowsLoaded: 9,
    rowsRejected: 1,
    days: ['2026-03-01'],
  },
} satisfies Required<VerifyResult>;
const runRecord = {
  id: runId,
  pipeline: 'access-logs',
  trigger: 'schedule',
  status: 'SUCCEEDED',
  startedAt,
  stoppedAt: startedAt,
} satisfies RunRecord;

/** Each handler's event (the Payload the ASL must build) and result (the `Payload` of lambda:invoke). */
const HANDLER_SAMPLES: Record<HandlerName, { event: object; result: Json }> = {
  plan: { event: { request: runRequest, runId, startedAt } satisfies PlanEvent, result: runState },
  work: { event: chunk, result: chunkSummary },
  verify: { event: { run: runState }, result: verifyResult as unknown as Json },
  finish: { event: { run: { ...runState, verify: verifyResult } }, result: runRecord },
  recordFailure: {
    event: { run: {}, error: { Error: 'x', Cause: 'y' }, runId, startedAt } satisfies Required<FailureEvent>,
    result: {
      ...runRecord,
      status: 'FAILED',
      error: { error: 'Sluice.InputError', cause: 'y', message: 'access-logs/x.csv: line 2 has 3 fields, not 10.' },
    } satisfies FailureOutput,
  },
  lease: {
    event: { action: 'acquire', request: runRequest, runId } satisfies LeaseEvent,
    result: { pipeline: 'access-logs', holder: runId, expiresAt: startedAt } satisfies LeaseOutput,
  },
};
const byPlaceholder = new Map(
  (Object.keys(HANDLERS) as HandlerName[]).map((k) => [`\${${HANDLERS[k].placeholder}}`, HANDLER_SAMPLES[k]]),
);

/**
 * What the service integrations return (the AWS API response shapes: Athena StartQueryExecution
 * and GetQueryExecution, SNS Publish; a Distributed Map with a ResultWriter returns the Map Run's ARN
 * and where the results went).
 */
const INTEGRATION_RESULTS: Record<string, Json> = {
  'arn:aws:states:::aws-sdk:athena:startQueryExecution': { QueryExecutionId: 'q-1' },
  'arn:aws:states:::aws-sdk:athena:getQueryExecution': {
    QueryExecution: {
      QueryExecutionId: 'q-1',
      Query: 'MERGE ...',
      Status: {
        State: 'FAILED',
        StateChangeReason: 'ICEBERG_COMMIT_ERROR: ...',
        SubmissionDateTime: startedAt,
        CompletionDateTime: startedAt,
      },
    },
  },
  'arn:aws:states:::sns:publish': { MessageId: 'm-1' },
};
const MAP_RUN_RESULT: Json = {
  MapRunArn: 'arn:aws:states:us-east-1:123456789012:mapRun:sluice/Chunks:1',
  ResultWriterDetails: { Bucket: 'sluice-working', Key: 'map-results/manifest.json' },
};
/** The context object (`$$`). */
const CONTEXT: Json = {
  Execution: { Id: 'arn:...', Name: runId, StartTime: startedAt, Input: runRequest, RoleArn: 'arn:...' },
  State: { Name: 'x', EnteredTime: startedAt, RetryCount: 0 },
  StateMachine: { Id: 'arn:...', Name: 'sluice' },
  Map: { Item: { Index: 0, Value: null } },
};
const CAUGHT_ERROR: Json = { Error: 'States.TaskFailed', Cause: 'something broke' };

// --- a small JSONPath data-flow walker ----------------------------------------------------

/** Resolves `$`, `$.a.b` and `$$.a.b`; undefined when a step is missing. */
function resolve(path: string, input: Json): Json | undefined {
  const [root, ...steps] = path.split('.');
  let node: Json | undefined = root === '$$' ? CONTEXT : root === '$' ? input : undefined;
  for (const step of steps) {
    node = node && typeof node === 'object' && !Array.isArray(node) ? node[step] : undefined;
  }
  return node;
}

/** The paths an intrinsic function reads (quoted strings removed first). */
const intrinsicPaths = (text: string) =>
  text.replace(/'(?:[^'\\]|\\.)*'/g, "''").match(/\$\$?(?:\.[A-Za-z_][A-Za-z0-9_]*)*/g) ?? [];

function evaluate(expression: string, read: (path: string) => Json | undefined): Json {
  if (!expression.startsWith('States.')) return read(expression) ?? null;
  const args = intrinsicPaths(expression).map(read);
  if (expression.startsWith('States.JsonMerge(')) {
    return Object.assign({}, ...args.slice(0, 2).map((a) => (a && typeof a === 'object' ? a : {}))) as Json;
  }
  return 'formatted';
}

class Walker {
  readonly problems: string[] = [];
  readonly visited = new Set<string>();
  private readonly seen = new Set<string>();

  private read(where: string, field: string, path: string, input: Json): Json | undefined {
    const value = resolve(path, input);
    if (value === undefined) {
      this.problems.push(`${where}: ${field} reads ${path}, which is not in ${JSON.stringify(input).slice(0, 300)}`);
    }
    return value;
  }

  /** Builds a Parameters / ResultSelector / ItemReader.Parameters template, checking each `.$` path. */
  private build(where: string, field: string, template: Json, input: Json): Json {
    if (Array.isArray(template)) return template.map((t) => this.build(where, field, t, input));
    if (!template || typeof template !== 'object') return template;
    const out: Record<string, Json> = {};
    for (const [key, value] of Object.entries(template)) {
      if (key.endsWith('.$') && typeof value === 'string') {
        out[key.slice(0, -2)] = evaluate(value, (p) => this.read(where, `${field}.${key}`, p, input));
      } else out[key] = this.build(where, `${field}.${key}`, value, input);
    }
    return out;
  }

  private withResult(input: Json, result: Json, resultPath: Json | undefined): Json {
    if (resultPath === null) return input;
    if (resultPath === undefined || resultPath === '$') return result;
    const steps = String(resultPath).split('.').slice(1);
    const out = structuredClone(input ?? {}) as Record<string, Json>;
    let node = out;
    for (const step of steps.slice(0, -1)) {
      node[step] = node[step] && typeof node[step] === 'object' ? node[step] : {};
      node = node[step] as Record<string, Json>;
    }
    node[steps.at(-1) ?? ''] = result;
    return out;
  }

  /** Runs the machine from `start` with `input`; `scope` names the enclosing Map/Parallel. */
  run(machine: Machine, input: Json, scope = ''): void {
    const queue: [string, Json][] = [[machine.StartAt, input]];
    for (let item = queue.shift(); item; item = queue.shift()) {
      const [name, stateInput] = item;
      const key = `${scope}${name} ${JSON.stringify(stateInput)}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      this.visited.add(`${scope}${name}`);
      const state = machine.States[name];
      if (!state) {
        this.problems.push(`${scope}${name}: no such state`);
        continue;
      }
      for (const [next, nextInput] of this.step(`${scope}${name}`, state, stateInput)) queue.push([next, nextInput]);
    }
  }

  private step(where: string, s: State, input: Json): [string, Json][] {
    const effective =
      typeof s.InputPath === 'string' ? (this.read(where, 'InputPath', s.InputPath, input) ?? null) : input;
    const out: [string, Json][] = [];
    const finish = (result: Json) => {
      let output = this.withResult(input, result, s.ResultPath);
      if (typeof s.OutputPath === 'string') output = this.read(where, 'OutputPath', s.OutputPath, output) ?? null;
      if (typeof s.Next === 'string') out.push([s.Next, output]);
    };
    const catches = () => {
      for (const c of (s.Catch ?? []) as { ResultPath?: Json; Next: string }[]) {
        out.push([c.Next, this.withResult(input, CAUGHT_ERROR, c.ResultPath)]);
      }
    };
    switch (s.Type) {
      case 'Task': {
        const params =
          s.Parameters === undefined ? effective : this.build(where, 'Parameters', s.Parameters, effective);
        let result: Json | undefined;
        if (s.Resource === 'arn:aws:states:::lambda:invoke') {
          const fn = (params as Record<string, Json>).FunctionName;
          const sample = byPlaceholder.get(String(fn));
          if (!sample) this.problems.push(`${where}: invokes ${String(fn)}, which is no handler of the catalog`);
          const payload = (params as Record<string, Json>).Payload;
          const missing = Object.keys(sample?.event ?? {}).filter(
            (k) => !(payload && typeof payload === 'object' && k in payload),
          );
          if (missing.length > 0)
            this.problems.push(`${where}: the Payload lacks ${missing.join(', ')} of the handler's event`);
          result = { Payload: sample?.result ?? null, StatusCode: 200, ExecutedVersion: '$LATEST' };
        } else result = INTEGRATION_RESULTS[String(s.Resource)];
        if (result === undefined) {
          this.problems.push(`${where}: no sample result for ${String(s.Resource)}`);
          result = {};
        }
        if (s.ResultSelector !== undefined) result = this.build(where, 'ResultSelector', s.ResultSelector, result);
        finish(result);
        catches();
        break;
      }
      case 'Pass':
        finish(
          s.Result !== undefined
            ? s.Result
            : s.Parameters !== undefined
              ? this.build(where, 'Parameters', s.Parameters, effective)
              : effective,
        );
        break;
      case 'Choice': {
        const check = (rule: Json) => {
          const r = rule as Record<string, Json>;
          if (typeof r.Variable === 'string' && r.IsPresent === undefined)
            this.read(where, 'Variable', r.Variable, effective);
          for (const nested of [...((r.And ?? []) as Json[]), ...((r.Or ?? []) as Json[]), ...(r.Not ? [r.Not] : [])]) {
            check(nested);
          }
        };
        for (const choice of (s.Choices ?? []) as Record<string, Json>[]) {
          check(choice);
          out.push([String(choice.Next), effective]);
        }
        if (typeof s.Default === 'string') out.push([s.Default, effective]);
        break;
      }
      case 'Map': {
        for (const field of ['MaxConcurrencyPath', 'ToleratedFailurePercentagePath', 'ToleratedFailureCountPath']) {
          const path = s[field];
          if (typeof path === 'string') this.read(where, field, path, effective);
        }
        let item: Json;
        const reader = s.ItemReader as Record<string, Json> | undefined;
        if (reader) {
          this.build(where, 'ItemReader.Parameters', reader.Parameters ?? {}, effective);
          item = chunk;
        } else {
          const items = this.read(where, 'ItemsPath', typeof s.ItemsPath === 'string' ? s.ItemsPath : '$', effective);
          if (!Array.isArray(items) || items.length === 0) {
            this.problems.push(`${where}: ItemsPath does not give a non-empty array`);
          }
          item = Array.isArray(items) ? (items[0] ?? null) : null;
        }
        if (s.ItemSelector !== undefined) item = this.build(where, 'ItemSelector', s.ItemSelector, effective);
        this.run(s.ItemProcessor as unknown as Machine, item, `${where}/`);
        finish(s.ResultWriter ? MAP_RUN_RESULT : []);
        catches();
        break;
      }
      case 'Parallel':
        for (const [i, branch] of ((s.Branches ?? []) as unknown as Machine[]).entries()) {
          this.run(branch, effective, `${where}[${i}]/`);
        }
        finish([]);
        catches();
        break;
      case 'Wait':
        if (typeof s.Next === 'string') out.push([s.Next, effective]);
        break;
      case 'Fail':
        for (const field of ['ErrorPath', 'CausePath']) {
          const path = s[field];
          if (typeof path === 'string') this.read(where, field, path, effective);
        }
        break;
      case 'Succeed':
        break;
      default:
        this.problems.push(`${where}: state type ${s.Type} is not modelled here`);
    }
    return out;
  }
}

/** Every state name, with its enclosing Map/Parallel as the walker names them. */
function stateNames(machine: Machine, scope = ''): string[] {
  return Object.entries(machine.States).flatMap(([name, s]) => [
    `${scope}${name}`,
    ...(s.ItemProcessor ? stateNames(s.ItemProcessor as unknown as Machine, `${scope}${name}/`) : []),
    ...((s.Branches ?? []) as unknown as Machine[]).flatMap((b, i) => stateNames(b, `${scope}${name}[${i}]/`)),
  ]);
}

// --- error names --------------------------------------------------------------------------

/** Step Functions' own error names ("Error names" in the Step Functions developer guide). */
const STATES_ERRORS = [
  'States.ALL',
  'States.DataLimitExceeded',
  'States.ExceedToleratedFailureThreshold',
  'States.HeartbeatTimeout',
  'States.Http.Socket',
  'States.IntrinsicFailure',
  'States.ItemReaderFailed',
  'States.NoChoiceMatched',
  'States.ParameterPathFailure',
  'States.Permissions',
  'States.QueryEvaluationError',
  'States.ResultPathMatchFailure',
  'States.ResultWriterFailed',
  'States.Runtime',
  'States.TaskFailed',
  'States.Timeout',
  'States.BranchFailed',
];
/** Transient errors of the Lambda invoke integration (the guide's "Handle transient Lambda service exceptions"). */
const LAMBDA_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.Unknown',
];
/** The aws-sdk integration reports `<service>.<exception>`: Athena's API exceptions. */
const ATHENA_ERRORS = [
  'Athena.InternalServerException',
  'Athena.InvalidRequestException',
  'Athena.TooManyRequestsException',
  'Athena.AthenaException',
];
/** The `name` of every error class of functions/errors.ts (and of the lease's module), read from an instance. */
const CLASS_ERROR_NAMES = [...Object.values(errors as Record<string, unknown>), ...Object.values(leaseErrors)]
  .filter((v): v is new (message: string) => Error => typeof v === 'function' && v.prototype instanceof Error)
  .map((ErrorClass) => new ErrorClass('sample').name);

/** Every error name the ASL spells: ErrorEquals entries, and `Error` of Fail states and Pass results. */
function aslErrorNames(node: Json): string[] {
  if (Array.isArray(node)) return node.flatMap(aslErrorNames);
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) => [
    ...(key === 'ErrorEquals' && Array.isArray(value) ? value.map(String) : []),
    ...(key === 'Error' && typeof value === 'string' ? [value] : []),
    ...aslErrorNames(value),
  ]);
}

// --- the tests ----------------------------------------------------------------------------

describe('the ASL and the TypeScript contracts', () => {
  it('reads errors.ts classes as Sluice.* names, and the ASL-only names are not class names', () => {
    expect(CLASS_ERROR_NAMES).toEqual(expect.arrayContaining(['Sluice.TransientError', 'Sluice.DefinitionError']));
    for (const name of CLASS_ERROR_NAMES) expect(name).toMatch(/^Sluice\.[A-Z][A-Za-z]+$/);
    expect(ASL_ERROR_NAMES.filter((n) => CLASS_ERROR_NAMES.includes(n))).toEqual([]);
  });

  it('spells every error name as Step Functions, the integrations or Sluice name it', () => {
    const known = new Set([
      ...STATES_ERRORS,
      ...LAMBDA_ERRORS,
      ...ATHENA_ERRORS,
      ...CLASS_ERROR_NAMES,
      ...ASL_ERROR_NAMES,
    ]);
    const names = [...new Set(aslErrorNames(asl as unknown as Json))];
    expect(names.length).toBeGreaterThan(5);
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    // No stale entry in the catalog's list: each ASL-only name is raised or matched by the ASL.
    expect(ASL_ERROR_NAMES.filter((n) => !names.includes(n))).toEqual([]);
  });

  it('retries what the handlers throw as transient on every Lambda task', () => {
    const transient = new errors.TransientError('sample').name;
    const lambdaTasks: [string, State][] = [];
    (function collect(machine: Machine) {
      for (const [name, s] of Object.entries(machine.States)) {
        if (s.Resource === 'arn:aws:states:::lambda:invoke' && name !== 'RecordFailure') lambdaTasks.push([name, s]);
        if (s.ItemProcessor) collect(s.ItemProcessor as unknown as Machine);
      }
    })(asl);
    expect(lambdaTasks.map(([name]) => name).sort()).toEqual([
      'AcquireLease',
      'Finish',
      'Plan',
      'ReleaseLease',
      'ReleaseLeaseAfterFailure',
      'Verify',
      'Work',
    ]);
    for (const [name, s] of lambdaTasks) {
      const retried = ((s.Retry ?? []) as { ErrorEquals: string[] }[]).flatMap((r) => r.ErrorEquals);
      expect(retried, name).toEqual(expect.arrayContaining([transient, 'Lambda.ClientExecutionTimeoutException']));
    }
  });

  it('uses exactly the placeholders of the catalog', () => {
    expect(aslPlaceholders(aslText)).toEqual([...ALL_PLACEHOLDERS]);
  });

  it('reads only JSONPaths that exist in the contracts at that point, through every state', () => {
    const walker = new Walker();
    walker.run(asl, runRequest as unknown as Json);
    expect(walker.problems).toEqual([]);
    // Every state was reached with a sample, so every path above was checked.
    expect(stateNames(asl).filter((n) => !walker.visited.has(n))).toEqual([]);
  });

  it('notices a path that is not in the contract (the walker can fail)', () => {
    const broken = JSON.parse(aslText.replace('"$.maxConcurrency"', '"$.maxConcurrent"')) as Machine;
    const walker = new Walker();
    walker.run(broken, runRequest as unknown as Json);
    expect(walker.problems).toEqual([expect.stringMatching(/^Process: MaxConcurrencyPath reads \$\.maxConcurrent,/)]);
  });
});
