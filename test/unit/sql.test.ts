import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../../functions/pipeline/definition.ts';
import {
  deriveStatements,
  literal,
  loadStatements,
  maintenanceStatements,
  partitionPredicate,
  quoteDdlIdentifier,
  quoteIdentifier,
  setupStatements,
} from '../../functions/pipeline/sql.ts';
import { accessLogs } from '../support/fixtures.ts';

const events = parsePipeline(
  readFileSync(join(import.meta.dirname, '../fixtures/events.yaml'), 'utf8'),
  'test/fixtures/events.yaml',
);
const at = { warehouseBucket: 'wh', workingBucket: 'wk' };

/** Every identifier of a statement outside quotes and literals, minus SQL words and aliases. */
function bareWords(sql: string): string[] {
  const code = sql
    .replace(/'(?:[^']|'')*'/g, "''")
    .replace(/"(?:[^"]|"")*"/g, '""')
    .replace(/`(?:[^`]|``)*`/g, '``');
  return code.match(/\b[a-z_][a-z0-9_]*\b/g) ?? [];
}

describe('warehouse SQL', () => {
  it('creates the main table as Iceberg, partitioned by day, with Athena DDL', () => {
    const [main] = setupStatements(accessLogs, at);
    expect(main).toMatch(
      /^CREATE TABLE IF NOT EXISTS `access_logs` \(`event_time` timestamp, .*`status` int, .*`source_offset` bigint\)/,
    );
    expect(main).toContain('PARTITIONED BY (day(`event_time`))');
    expect(main).toContain("'table_type'='ICEBERG'");
    expect(main).not.toContain('EXTERNAL');
  });

  it('splits a load of more than 100 days into several MERGEs', () => {
    const days = Array.from({ length: 150 }, (_, i) => new Date(Date.UTC(2024, 0, 1 + i)).toISOString().slice(0, 10));
    const load = loadStatements(accessLogs, 'r1', days, true, false);
    expect(load).toHaveLength(2);
    expect(load.every((s) => s.startsWith('MERGE INTO "access_logs" AS t'))).toBe(true);
    expect(deriveStatements(accessLogs, days)).toHaveLength(2);
  });

  it('escapes quotes in literals and identifiers', () => {
    expect(literal("o'brien")).toBe("'o''brien'");
    expect(quoteIdentifier('a"b')).toBe('"a""b"');
    expect(quoteDdlIdentifier('a`b')).toBe('`a``b`');
  });
});

describe('warehouse SQL: identifiers are quoted (defect 8)', () => {
  // Identifiers are lower case in definitions; SQL keywords here are written in upper case,
  // so any lower-case word outside quotes is an unquoted identifier or an alias.
  const aliases = new Set(['t', 's', 'day']);

  it('quotes every identifier of setup (backticks), load and derive (double quotes)', () => {
    const setup = setupStatements(accessLogs, at);
    // `day(...)` is Iceberg's partition transform; column types follow each quoted name.
    const ddlWords = new Set([...aliases, 'string', 'int', 'bigint', 'double', 'timestamp', 'date']);
    for (const statement of setup) {
      expect(bareWords(statement).filter((w) => !ddlWords.has(w))).toEqual([]);
      expect(statement).not.toMatch(/"[a-z_]+"/);
    }
    const load = loadStatements(accessLogs, 'r1', ['2024-03-01'], true, true);
    for (const statement of load) {
      expect(bareWords(statement).filter((w) => !aliases.has(w))).toEqual([]);
      expect(statement).not.toContain('`');
    }
    const [derive] = deriveStatements(accessLogs, ['2024-03-01']);
    const merge = (derive ?? '').replace(/USING \([\s\S]*\) AS s\nON/, 'USING () AS s\nON'); // the user's SQL is theirs
    expect(bareWords(merge).filter((w) => !aliases.has(w))).toEqual([]);
    expect(merge).toContain('INSERT ("day", "path", "requests"');
  });
});

describe('warehouse SQL: the load MERGE is pruned to the days loaded (defect 6)', () => {
  it('restricts the target to half-open timestamp ranges, one per run of consecutive days', () => {
    const [load] = loadStatements(
      accessLogs,
      'r1',
      ['2024-03-05', '2024-02-28', '2024-02-29', '2024-03-01'],
      true,
      false,
    );

    expect(load).toContain(
      `ON (t."source_key" = s."source_key" AND t."source_version" = s."source_version" AND t."source_offset" = s."source_offset" AND ` +
        `((t."event_time" >= TIMESTAMP '2024-02-28 00:00:00' AND t."event_time" < TIMESTAMP '2024-03-02 00:00:00') OR ` +
        `(t."event_time" >= TIMESTAMP '2024-03-05 00:00:00' AND t."event_time" < TIMESTAMP '2024-03-06 00:00:00')))`,
    );
  });

  it('crosses a year, and writes a single range without OR', () => {
    expect(partitionPredicate(accessLogs, ['2024-12-31', '2025-01-01'], 't')).toBe(
      `(t."event_time" >= TIMESTAMP '2024-12-31 00:00:00' AND t."event_time" < TIMESTAMP '2025-01-02 00:00:00')`,
    );
  });

  it('uses an IN list for a date partition column', () => {
    const [load] = loadStatements(events, 'r1', ['2024-03-02', '2024-03-01'], true, false);

    expect(load).toContain(`AND t."day" IN (DATE '2024-03-01', DATE '2024-03-02'))`);
  });

  it('refuses a day that is not YYYY-MM-DD rather than writing a wrong range', () => {
    expect(() => loadStatements(accessLogs, 'r1', ['2024-3-1'], true, false)).toThrow(/"2024-3-1" is not a day/);
  });

  it('leaves the rejects MERGE unpruned: that table has no partitions', () => {
    const [rejects] = loadStatements(accessLogs, 'r1', [], false, true);

    expect(rejects).toMatch(/^MERGE INTO "access_logs_rejects" AS t/);
    expect(rejects).toContain(
      'ON (t."source_key" = s."source_key" AND t."source_version" = s."source_version" AND t."source_offset" = s."source_offset")',
    );
  });
});

describe('warehouse SQL: derived tables match NULL keys (defect 9)', () => {
  it('matches keys with IS NOT DISTINCT FROM', () => {
    const [derive] = deriveStatements(accessLogs, ['2024-03-01']);

    expect(derive).toContain('ON (t."day" IS NOT DISTINCT FROM s."day" AND t."path" IS NOT DISTINCT FROM s."path")');
  });
});

describe('warehouse SQL: maintenance (defect 9)', () => {
  it('compacts the days of the main table and every other Iceberg table, then vacuums them', () => {
    expect(maintenanceStatements(accessLogs, ['2024-03-02', '2024-03-01'])).toEqual([
      `OPTIMIZE "access_logs" REWRITE DATA USING BIN_PACK WHERE ("event_time" >= TIMESTAMP '2024-03-01 00:00:00' AND "event_time" < TIMESTAMP '2024-03-03 00:00:00')`,
      'OPTIMIZE "access_logs_rejects" REWRITE DATA USING BIN_PACK',
      'OPTIMIZE "daily_traffic" REWRITE DATA USING BIN_PACK',
      'VACUUM `access_logs`',
      'VACUUM `access_logs_rejects`',
      'VACUUM `daily_traffic`',
    ]);
  });

  it('skips compacting the main table when no day was loaded, and batches 100 days per OPTIMIZE', () => {
    expect(maintenanceStatements(accessLogs, []).filter((s) => s.includes('"access_logs" '))).toEqual([]);
    const days = Array.from({ length: 150 }, (_, i) =>
      new Date(Date.UTC(2024, 0, 1 + 2 * i)).toISOString().slice(0, 10),
    );
    expect(maintenanceStatements(accessLogs, days).filter((s) => s.startsWith('OPTIMIZE "access_logs" '))).toHaveLength(
      2,
    );
  });
});
