import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DefinitionError } from '../../functions/errors.ts';
import { checkTransforms } from '../../functions/pipeline/check-transform.ts';
import { matchesInput, parsePipeline } from '../../functions/pipeline/definition.ts';
import {
  checkTableLock,
  needsSetup,
  parseTableShapes,
  setupStatementsFor,
  shapesToRecord,
  tableLockFile,
  tableShapes,
  writeTableLocks,
} from '../../functions/pipeline/evolution.ts';
import { setupStatements } from '../../functions/pipeline/sql.ts';
import { accessLogs, pipelines } from '../support/fixtures.ts';
import { tempDir } from '../support/temp.ts';

const source = readFileSync(join(import.meta.dirname, '../../pipelines/access-logs.yaml'), 'utf8');

describe('pipeline definitions', () => {
  it('reads access-logs with its defaults applied', () => {
    expect(accessLogs.processing).toEqual({
      chunkSize: 64 * 1024 * 1024,
      maxConcurrency: 50,
      toleratedFailurePercentage: 0,
    });
    expect(accessLogs.schedule).toEqual({ cron: '0 20 * * *', timezone: 'Asia/Seoul' });
  });

  it('names the file, line and column of an invalid value', () => {
    const broken = source.replace('timezone: Asia/Seoul', 'timezone: Mars/Olympus');
    const line = broken.split('\n').findIndex((l) => l.includes('Mars/Olympus')) + 1;
    expect(() => parsePipeline(broken, 'p.yaml')).toThrow(
      new RegExp(`p\\.yaml:${line}:13: schedule\\.timezone: must be an IANA time zone`),
    );
  });

  it('rejects identifiers that could carry SQL', () => {
    const broken = source.replace('name: access_logs', 'name: "x; DROP TABLE y"');
    expect(() => parsePipeline(broken, 'p.yaml')).toThrow(DefinitionError);
    expect(() => parsePipeline(broken, 'p.yaml')).toThrow(/table\.name: must be a lower-case SQL identifier/);
  });

  it('reports invalid YAML with its position', () => {
    expect(() => parsePipeline('name: [unclosed', 'q.yaml')).toThrow(/^q\.yaml:1:\d+: invalid YAML/);
  });

  it('matches input keys by prefix and suffix', () => {
    expect(matchesInput(accessLogs, 'access-logs/2024/a.csv')).toBe(true);
    expect(matchesInput(accessLogs, 'access-logs/a.csv.gz')).toBe(true);
    expect(matchesInput(accessLogs, 'access-logs/a.json')).toBe(false);
    expect(matchesInput(accessLogs, 'other/a.csv')).toBe(false);
  });
});

describe('checkTransforms', () => {
  it('accepts the access-logs transform', async () => {
    await expect(checkTransforms([accessLogs])).resolves.toBeUndefined();
  });

  it('accepts columns named after SQL keywords', async () => {
    const keywords = parsePipeline(
      `name: keywords
input: { prefix: k/, suffixes: [.csv] }
schema: [{ name: date, type: date }, { name: user, type: string }, { name: order, type: integer }, { name: timestamp, type: timestamp }]
transform: SELECT "date", "user", "order", "timestamp", source_key, source_version, source_offset FROM input
table:
  name: order
  columns: [{ name: date, type: date }, { name: user, type: string }, { name: order, type: integer }, { name: timestamp, type: timestamp }]
  partitionDay: timestamp
`,
      'keywords.yaml',
    );
    await expect(checkTransforms([keywords])).resolves.toBeUndefined();
  });

  it('names the pipeline and the column when the transform does not fit the table', async () => {
    const broken = parsePipeline(
      source.replace('SELECT * REPLACE (timezone', 'SELECT * EXCLUDE (country) REPLACE (timezone'),
      'p.yaml',
    );
    await expect(checkTransforms([broken])).rejects.toThrow(
      'p.yaml: the transform of pipeline access-logs does not fit table access_logs: it returns no column country',
    );
    const typo = parsePipeline(source.replace("timezone('UTC', event_time)", "timezone('UTC', event_tim)"), 'p.yaml');
    await expect(checkTransforms([typo])).rejects.toThrow(
      /the transform of pipeline access-logs does not run: .*event_tim/,
    );
    const wrongType = parsePipeline(
      source.replace("timezone('UTC', event_time) AS event_time", 'event_time AS event_time'),
      'p.yaml',
    );
    await expect(checkTransforms([wrongType])).rejects.toThrow(
      /event_time is TIMESTAMP WITH TIME ZONE, the table wants TIMESTAMP/,
    );
  });
});

describe('partitionDay', () => {
  it('must be a date or a timestamp column', () => {
    const broken = source.replace('partitionDay: event_time', 'partitionDay: country');
    expect(() => parsePipeline(broken, 'p.yaml')).toThrow(
      /partitionDay "country" is a string column of table access_logs; it must be a date or a timestamp/,
    );
  });
});

/** access-logs with one line of its table (4-space indent) replaced. */
const tableLine = (from: string, to: string) => {
  const line = `    - { name: ${from} }`;
  if (!source.includes(line)) throw new Error(`no table line ${line}`);
  return parsePipeline(source.replace(line, to === '' ? '' : `    - { name: ${to} }`), 'pipelines/access-logs.yaml');
};
const withReferrer = tableLine(
  'country, type: string',
  'country, type: string }\n    - { name: referrer, type: string',
);

describe('table evolution (defect 7)', () => {
  const at = { warehouseBucket: 'wh', workingBucket: 'wk' };
  const before = tableShapes(accessLogs);

  it('creates every table on the first run, and only creates when nothing changed', () => {
    expect(setupStatementsFor(accessLogs, at, undefined)).toEqual(setupStatements(accessLogs, at));
    expect(setupStatementsFor(accessLogs, at, before)).toEqual(setupStatements(accessLogs, at));
    expect(needsSetup(accessLogs, undefined)).toBe(true);
    expect(needsSetup(accessLogs, before)).toBe(false);
  });

  it('adds a column appended to the table to it and to its staging table, after the CREATEs', () => {
    const statements = setupStatementsFor(withReferrer, at, before);

    expect(statements.slice(0, -2)).toEqual(setupStatements(withReferrer, at));
    expect(statements.slice(-2)).toEqual([
      'ALTER TABLE `access_logs` ADD COLUMNS (`referrer` string)',
      'ALTER TABLE `access_logs_staging` ADD COLUMNS (`referrer` string)',
    ]);
    expect(needsSetup(withReferrer, before)).toBe(true);
    const recorded = shapesToRecord(withReferrer, before);
    expect(recorded.tables[0]?.columns.at(-1)).toEqual({ name: 'referrer', type: 'string' });
    expect(needsSetup(withReferrer, recorded)).toBe(false);
  });

  it('adds a column appended to a derived table to that table only', () => {
    const derived = parsePipeline(
      source.replace(
        '      - { name: avg_latency_ms, type: double }',
        '      - { name: avg_latency_ms, type: double }\n      - { name: p99_latency_ms, type: double }',
      ),
      'p.yaml',
    );

    expect(setupStatementsFor(derived, at, before).filter((s) => s.startsWith('ALTER'))).toEqual([
      'ALTER TABLE `daily_traffic` ADD COLUMNS (`p99_latency_ms` double)',
    ]);
  });

  it('refuses any other change, naming the table, the column and what to do', () => {
    const refused = (p: ReturnType<typeof parsePipeline>) => () => setupStatementsFor(p, at, before);

    expect(refused(tableLine('user_agent, type: string', ''))).toThrow(
      /table access_logs of pipeline access-logs \(pipelines\/access-logs\.yaml\): column "user_agent" \(string, column 9\) was removed; .*put "user_agent" back/,
    );
    expect(refused(tableLine('country, type: string', 'region, type: string'))).toThrow(
      /table access_logs .*column "country" \(string, column 10\) was removed or renamed to "region"/,
    );
    expect(refused(tableLine('status, type: integer', 'status, type: bigint'))).toThrow(
      /table access_logs .*column "status" was int and is now bigint; .*put int back/,
    );
    expect(
      refused(tableLine('method, type: string', 'referrer, type: string }\n    - { name: method, type: string')),
    ).toThrow(/new column "referrer" is column 4, before existing columns; .*at the end/);
    const swapped = parsePipeline(
      source.replace(
        '    - { name: method, type: string }\n    - { name: path, type: string }',
        '    - { name: path, type: string }\n    - { name: method, type: string }',
      ),
      'p.yaml',
    );
    expect(refused(swapped)).toThrow(
      /column "method" \(string, column 4\) moved to column 5; columns cannot be reordered/,
    );
    const newPartition = parsePipeline(
      source
        .replace(
          '    - { name: country, type: string }\n',
          '    - { name: country, type: string }\n    - { name: day, type: date }\n',
        )
        .replace('partitionDay: event_time', 'partitionDay: day'),
      'p.yaml',
    );
    expect(refused(newPartition)).toThrow(/table access_logs .*partitionDay was "event_time" and is now "day"/);
    expect(() => shapesToRecord(newPartition, before)).toThrow(DefinitionError);
  });

  it('keeps the shapes of tables the definition no longer has', () => {
    const noDerived = parsePipeline(source.replace(/\nderived:[\s\S]*?\nschedule:/, '\nschedule:'), 'p.yaml');

    expect(noDerived.derived).toEqual([]);
    expect(shapesToRecord(noDerived, before).tables.map((t) => t.name)).toEqual([
      'access_logs',
      'access_logs_rejects',
      'daily_traffic',
    ]);
  });
});

describe('table lock files (defect 7)', () => {
  const pipelinesDir = join(import.meta.dirname, '../../pipelines');

  it('the committed lock of access-logs matches its definition', () => {
    expect(checkTableLock(pipelines, pipelinesDir)).toEqual([]);
    expect(parseTableShapes(readFileSync(tableLockFile(pipelinesDir, 'access-logs'), 'utf8'), 'lock')).toEqual(
      tableShapes(accessLogs),
    );
  });

  it('writes a missing lock, updates it for an added column, and refuses anything else', () => {
    const dir = tempDir('lock-');
    const [created] = checkTableLock([accessLogs], dir);
    expect(created).toMatchObject({ pipeline: 'access-logs', file: join(dir, 'access-logs.tables.json'), added: [] });
    writeTableLocks(checkTableLock([accessLogs], dir));
    expect(checkTableLock([accessLogs], dir)).toEqual([]);

    const [added] = checkTableLock(new Map([['access-logs', withReferrer]]), dir);
    expect(added?.added).toEqual(['access_logs.referrer']);
    expect(parseTableShapes(added?.content ?? '', 'lock')).toEqual(tableShapes(withReferrer));

    expect(() => checkTableLock([tableLine('country, type: string', 'region, type: string')], dir)).toThrow(
      new RegExp(
        `differ from its committed lock file ${join(dir, 'access-logs.tables.json').replaceAll('.', '\\.')} .*\\n.*column "country" \\(string, column 10\\) was removed or renamed to "region"`,
      ),
    );
  });

  it('names a lock file that is not one', () => {
    const dir = tempDir('lock-');
    writeFileSync(join(dir, 'access-logs.tables.json'), '{"pipeline": "access-logs", "tables": [{"name": 1}]}');

    expect(() => checkTableLock([accessLogs], dir)).toThrow(
      /access-logs\.tables\.json is not a table lock: tables\.0\.name/,
    );
  });
});
