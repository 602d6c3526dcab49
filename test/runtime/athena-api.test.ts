/**
 * The Athena API of the embedded runtime, through the real clients: `@aws-sdk/client-athena` and
 * the AWS CLI v1 (`python3 -m awscli`) against the S3 server's endpoint, over a local warehouse.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AthenaClient,
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  type GetQueryResultsOutput,
  ListQueryExecutionsCommand,
  type QueryExecution,
  StartQueryExecutionCommand,
  StopQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { athenaResults, LocalAthena } from '../../runtime/athena.ts';
import { athenaApi } from '../../runtime/athena-api.ts';
import { LOCAL_ATHENA_DATABASE, LOCAL_ATHENA_WORKGROUP } from '../../runtime/environment.ts';
import { localS3Client } from '../../runtime/s3-client.ts';
import { type S3Server, startS3Server } from '../../runtime/s3-server.ts';
import { LocalWarehouse } from '../../runtime/warehouse.ts';
import { tempDir } from '../support/temp.ts';

const run = promisify(execFile);

let dir: string;
let server: S3Server;
let s3: ReturnType<typeof localS3Client>;
let athena: LocalAthena;
let client: AthenaClient;
/** While set, the next statements wait for it before they run (to observe RUNNING and QUEUED). */
let hold: Promise<void> | undefined;

beforeAll(async () => {
  dir = tempDir('athena-api-');
  let api: ReturnType<typeof athenaApi> | undefined;
  server = await startS3Server({
    dir,
    port: 0,
    awsApis: (): Record<string, ReturnType<typeof athenaApi>> => (api ? { AmazonAthena: api } : {}),
  });
  s3 = localS3Client(server.endpoint);
  const warehouse = new LocalWarehouse({ file: join(dir, 'warehouse.duckdb'), s3, tmpDir: join(dir, 'tmp') });
  athena = new LocalAthena({
    query: async (sql) => {
      await hold;
      return warehouse.read(sql, athenaResults);
    },
    defaultWorkGroup: LOCAL_ATHENA_WORKGROUP,
  });
  api = athenaApi({ athena });
  client = new AthenaClient({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'any', secretAccessKey: 'any' },
  });
});

afterAll(async () => {
  client?.destroy();
  await athena?.idle();
  s3?.destroy();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const context = { WorkGroup: LOCAL_ATHENA_WORKGROUP, QueryExecutionContext: { Database: LOCAL_ATHENA_DATABASE } };

async function start(sql: string): Promise<string> {
  const { QueryExecutionId } = await client.send(new StartQueryExecutionCommand({ QueryString: sql, ...context }));
  if (!QueryExecutionId) throw new Error('no QueryExecutionId');
  return QueryExecutionId;
}

/** Starts a query and polls GetQueryExecution until it ends, as a client of Athena does. */
async function query(sql: string): Promise<QueryExecution & { QueryExecutionId: string }> {
  const id = await start(sql);
  for (;;) {
    const { QueryExecution: execution } = await client.send(new GetQueryExecutionCommand({ QueryExecutionId: id }));
    const state = execution?.Status?.State;
    if (execution && state !== 'QUEUED' && state !== 'RUNNING') return { ...execution, QueryExecutionId: id };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const values = (page: GetQueryResultsOutput) =>
  (page.ResultSet?.Rows ?? []).map((row) => (row.Data ?? []).map((d) => d.VarCharValue));

const TABLE = `CREATE TABLE IF NOT EXISTS visits (id int, name string, day date, seen_at timestamp, amount decimal(10,2), ok boolean, score double)
LOCATION 's3://sluice-warehouse/visits/'
TBLPROPERTIES ('table_type'='ICEBERG')`;
const INSERT = `INSERT INTO visits VALUES
  (1, 'ann', DATE '2024-03-01', TIMESTAMP '2024-03-01 10:20:30.123456', 12.50, true, 1.5),
  (2, NULL, DATE '2024-03-02', TIMESTAMP '2024-03-02 00:00:00', NULL, false, 100),
  (3, 'cy', NULL, NULL, 0.10, NULL, 1e20)`;
const SELECT = 'SELECT id, name, day, seen_at, amount, ok, score FROM visits ORDER BY id';

/** The AWS CLI v1, if this machine has it. */
const cli = await run('python3', ['-m', 'awscli', '--version']).then(
  () => true,
  () => false,
);
/** Dummy credentials, and none of the user's AWS configuration. */
const cliEnv: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_'))),
  AWS_ACCESS_KEY_ID: 'any',
  AWS_SECRET_ACCESS_KEY: 'any',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
};
const aws = (...args: string[]) =>
  run('python3', ['-m', 'awscli', 'athena', ...args, '--endpoint-url', server.endpoint, '--region', 'us-east-1'], {
    env: cliEnv,
  });
/** The CLI's failure: its exit code and stderr. */
const awsFails = (...args: string[]) =>
  aws(...args).then(
    (out) => {
      throw new Error(`expected the AWS CLI to fail, it printed ${out.stdout}`);
    },
    (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
  );
const cliIt = (name: string, fn: () => Promise<void>) =>
  cli ? it(name, fn) : it.skip(`${name} (skipped: python3 -m awscli is missing; pip install awscli)`, fn);

describe('Athena API (@aws-sdk/client-athena)', () => {
  let selectId: string;

  it('runs DDL and DML: no rows, and the rows an INSERT wrote as UpdateCount', async () => {
    const created = await query(TABLE);
    expect(created.Status?.State).toBe('SUCCEEDED');
    expect(created.StatementType).toBe('DDL');
    expect(created.WorkGroup).toBe('sluice');
    expect(created.QueryExecutionContext?.Database).toBe('sluice');
    expect(created.Status?.SubmissionDateTime).toBeInstanceOf(Date);
    expect(created.Status?.CompletionDateTime?.getTime()).toBeGreaterThanOrEqual(
      created.Status?.SubmissionDateTime?.getTime() ?? Number.NaN,
    );
    const ddl = await client.send(new GetQueryResultsCommand({ QueryExecutionId: created.QueryExecutionId }));
    expect(ddl.UpdateCount).toBe(0);
    expect(ddl.ResultSet?.Rows).toEqual([]);
    expect(ddl.ResultSet?.ResultSetMetadata?.ColumnInfo).toEqual([]);

    const inserted = await query(INSERT);
    expect(inserted.Status?.State).toBe('SUCCEEDED');
    expect(inserted.StatementType).toBe('DML');
    const dml = await client.send(new GetQueryResultsCommand({ QueryExecutionId: inserted.QueryExecutionId }));
    expect(dml.UpdateCount).toBe(3);
    expect(dml.ResultSet?.Rows).toEqual([]);
  });

  it("answers a SELECT with a header row, strings as Athena prints them, NULL as {} and Athena's types", async () => {
    const selected = await query(SELECT);
    expect(selected.Status).toMatchObject({ State: 'SUCCEEDED' });
    selectId = selected.QueryExecutionId;
    const page = await client.send(new GetQueryResultsCommand({ QueryExecutionId: selectId }));

    expect(page.NextToken).toBeUndefined();
    expect(page.UpdateCount).toBe(0);
    expect(values(page)).toEqual([
      ['id', 'name', 'day', 'seen_at', 'amount', 'ok', 'score'],
      ['1', 'ann', '2024-03-01', '2024-03-01 10:20:30.123', '12.50', 'true', '1.5'],
      ['2', undefined, '2024-03-02', '2024-03-02 00:00:00.000', undefined, 'false', '100.0'],
      ['3', 'cy', undefined, undefined, '0.10', undefined, '1.0E20'],
    ]);
    // NULL is a Datum without VarCharValue, as Athena sends it.
    expect(page.ResultSet?.Rows?.[2]?.Data?.[1]).toEqual({});
    const columns = page.ResultSet?.ResultSetMetadata?.ColumnInfo ?? [];
    expect(columns.map((c) => [c.Name, c.Label, c.Type])).toEqual([
      ['id', 'id', 'integer'],
      ['name', 'name', 'varchar'],
      ['day', 'day', 'date'],
      ['seen_at', 'seen_at', 'timestamp'],
      ['amount', 'amount', 'decimal'],
      ['ok', 'ok', 'boolean'],
      ['score', 'score', 'double'],
    ]);
    expect(columns[4]).toMatchObject({ Precision: 10, Scale: 2, Nullable: 'UNKNOWN', CaseSensitive: false });
    expect(columns[1]).toMatchObject({ CaseSensitive: true, Nullable: 'UNKNOWN' });
  });

  it('pages with MaxResults and NextToken, the header counting on the first page', async () => {
    const pages: (string | undefined)[][][] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new GetQueryResultsCommand({ QueryExecutionId: selectId, MaxResults: 2, NextToken: token }),
      );
      pages.push(values(page));
      token = page.NextToken;
    } while (token);

    expect(pages.map((p) => p.map((row) => row[0]))).toEqual([
      ['id', '1'],
      ['2', '3'],
    ]);
    await expect(
      client.send(new GetQueryResultsCommand({ QueryExecutionId: selectId, MaxResults: 1001 })),
    ).rejects.toMatchObject({ name: 'InvalidRequestException' });
    await expect(
      client.send(new GetQueryResultsCommand({ QueryExecutionId: selectId, NextToken: 'not-a-token' })),
    ).rejects.toMatchObject({ name: 'InvalidRequestException' });
  });

  it("reports a failing query as FAILED with the engine's reason, and refuses its results", async () => {
    const failed = await query('SELECT * FROM no_such_table');
    expect(failed.Status?.State).toBe('FAILED');
    expect(failed.Status?.StateChangeReason).toMatch(/no_such_table/);
    await expect(
      client.send(new GetQueryResultsCommand({ QueryExecutionId: failed.QueryExecutionId })),
    ).rejects.toMatchObject({ name: 'InvalidRequestException', message: expect.stringMatching(/no_such_table/) });
  });

  it('refuses the results of a query that has not finished, as Athena words it, and stops it', async () => {
    let release = () => {};
    hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = await start('SELECT 1');
    const queued = await start('SELECT 2');
    await expect(client.send(new GetQueryResultsCommand({ QueryExecutionId: running }))).rejects.toMatchObject({
      name: 'InvalidRequestException',
      message: 'Query has not yet finished. Current state: RUNNING',
      $metadata: { httpStatusCode: 400 },
    });
    await expect(client.send(new GetQueryResultsCommand({ QueryExecutionId: queued }))).rejects.toMatchObject({
      message: 'Query has not yet finished. Current state: QUEUED',
    });
    await client.send(new StopQueryExecutionCommand({ QueryExecutionId: queued }));
    hold = undefined;
    release();
    await athena.idle();
    const stopped = await client.send(new GetQueryExecutionCommand({ QueryExecutionId: queued }));
    expect(stopped.QueryExecution?.Status?.State).toBe('CANCELLED');
    const done = await client.send(new GetQueryResultsCommand({ QueryExecutionId: running }));
    expect(values(done)).toEqual([['1'], ['1']]);
  });

  it('answers an unknown id with InvalidRequestException, in the AWS JSON error shape', async () => {
    await expect(
      client.send(new GetQueryExecutionCommand({ QueryExecutionId: '00000000-0000-0000-0000-000000000000' })),
    ).rejects.toMatchObject({ name: 'InvalidRequestException', $metadata: { httpStatusCode: 400 } });
    const response = await fetch(server.endpoint, {
      method: 'POST',
      headers: { 'X-Amz-Target': 'AmazonAthena.GetQueryExecution', 'Content-Type': 'application/x-amz-json-1.1' },
      body: JSON.stringify({ QueryExecutionId: 'nope' }),
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(await response.json()).toMatchObject({ __type: 'InvalidRequestException', message: expect.any(String) });
  });

  it('refuses a workgroup or database other than the local ones, naming them', async () => {
    await expect(
      client.send(new StartQueryExecutionCommand({ QueryString: 'SELECT 1', WorkGroup: 'primary' })),
    ).rejects.toMatchObject({ name: 'InvalidRequestException', message: expect.stringContaining("'sluice'") });
    await expect(
      client.send(
        new StartQueryExecutionCommand({ QueryString: 'SELECT 1', QueryExecutionContext: { Database: 'default' } }),
      ),
    ).rejects.toMatchObject({ name: 'InvalidRequestException', message: expect.stringContaining("'sluice'") });
    await expect(client.send(new StartQueryExecutionCommand({ QueryString: ' ' }))).rejects.toMatchObject({
      name: 'InvalidRequestException',
    });
    await expect(client.send(new ListQueryExecutionsCommand({ WorkGroup: 'primary' }))).rejects.toMatchObject({
      name: 'InvalidRequestException',
    });
  });

  it('lists the query executions newest first, a page at a time', async () => {
    const newest = await start('SELECT 3');
    await athena.idle();
    const all: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await client.send(
        new ListQueryExecutionsCommand({ WorkGroup: LOCAL_ATHENA_WORKGROUP, MaxResults: 2, NextToken: token }),
      );
      expect(page.QueryExecutionIds?.length).toBeLessThanOrEqual(2);
      all.push(...(page.QueryExecutionIds ?? []));
      token = page.NextToken;
      pages++;
    } while (token);
    expect(all[0]).toBe(newest);
    expect(all).toContain(selectId);
    expect(all.indexOf(newest)).toBeLessThan(all.indexOf(selectId));
    expect(new Set(all).size).toBe(all.length);
    expect(pages).toBe(Math.ceil(all.length / 2));
    const whole = await client.send(new ListQueryExecutionsCommand({}));
    expect(whole.QueryExecutionIds).toEqual(all);
  });
});

describe('Athena API (AWS CLI v1)', () => {
  cliIt('starts a query and reads its results, paged by the CLI', async () => {
    const started = JSON.parse(
      (
        await aws(
          'start-query-execution',
          '--query-string',
          SELECT,
          '--work-group',
          'sluice',
          '--query-execution-context',
          'Database=sluice',
        )
      ).stdout,
    ) as { QueryExecutionId: string };
    await athena.idle();
    const execution = JSON.parse(
      (await aws('get-query-execution', '--query-execution-id', started.QueryExecutionId)).stdout,
    ) as { QueryExecution: { Status: { State: string; SubmissionDateTime: string } } };
    expect(execution.QueryExecution.Status.State).toBe('SUCCEEDED');
    // The CLI follows NextToken itself; --page-size 2 makes it ask for two rows at a time.
    const results = JSON.parse(
      (await aws('get-query-results', '--query-execution-id', started.QueryExecutionId, '--page-size', '2')).stdout,
    ) as GetQueryResultsOutput;
    expect(values(results)).toEqual([
      ['id', 'name', 'day', 'seen_at', 'amount', 'ok', 'score'],
      ['1', 'ann', '2024-03-01', '2024-03-01 10:20:30.123', '12.50', 'true', '1.5'],
      ['2', undefined, '2024-03-02', '2024-03-02 00:00:00.000', undefined, 'false', '100.0'],
      ['3', 'cy', undefined, undefined, '0.10', undefined, '1.0E20'],
    ]);
    expect(results.ResultSet?.ResultSetMetadata?.ColumnInfo?.map((c) => c.Type)).toEqual([
      'integer',
      'varchar',
      'date',
      'timestamp',
      'decimal',
      'boolean',
      'double',
    ]);
  });

  cliIt("reports a failed query's reason, an unknown id and a wrong workgroup as Athena's errors", async () => {
    const failed = JSON.parse(
      (await aws('start-query-execution', '--query-string', 'SELECT nope FROM visits', '--work-group', 'sluice'))
        .stdout,
    ) as { QueryExecutionId: string };
    await athena.idle();
    const execution = JSON.parse(
      (await aws('get-query-execution', '--query-execution-id', failed.QueryExecutionId)).stdout,
    ) as { QueryExecution: { Status: { State: string; StateChangeReason: string } } };
    expect(execution.QueryExecution.Status).toMatchObject({
      State: 'FAILED',
      StateChangeReason: expect.stringMatching(/nope/),
    });

    const unknown = await awsFails('get-query-results', '--query-execution-id', 'no-such-id');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/An error occurred \(InvalidRequestException\) when calling the GetQueryResults/);

    const wrong = await awsFails('start-query-execution', '--query-string', 'SELECT 1', '--work-group', 'primary');
    expect(wrong.stderr).toMatch(/\(InvalidRequestException\) when calling the StartQueryExecution operation/);
    expect(wrong.stderr).toContain("'sluice'");
  });
});
