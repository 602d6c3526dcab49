import { describe, expect, it } from 'vitest';
import { deriveStatements, literal, loadStatements, setupStatements } from '../../functions/pipeline/sql.ts';
import { accessLogs } from '../support/fixtures.ts';

describe('warehouse SQL', () => {
  it('creates the main table as Iceberg, partitioned by day, with Athena DDL', () => {
    const [main] = setupStatements(accessLogs, { warehouseBucket: 'wh', workingBucket: 'wk' });
    expect(main).toMatch(
      /^CREATE TABLE IF NOT EXISTS access_logs \(event_time timestamp, .*status int, .*source_offset bigint\)/,
    );
    expect(main).toContain('PARTITIONED BY (day(event_time))');
    expect(main).toContain("'table_type'='ICEBERG'");
    expect(main).not.toContain('EXTERNAL');
  });

  it('splits a load of more than 100 days into several MERGEs', () => {
    const days = Array.from({ length: 150 }, (_, i) => new Date(Date.UTC(2024, 0, 1 + i)).toISOString().slice(0, 10));
    const load = loadStatements(accessLogs, 'r1', days, true, false);
    expect(load).toHaveLength(2);
    expect(load.every((s) => s.startsWith('MERGE INTO access_logs AS t'))).toBe(true);
    expect(deriveStatements(accessLogs, days)).toHaveLength(2);
  });

  it('escapes quotes in literals', () => {
    expect(literal("o'brien")).toBe("'o''brien'");
  });
});
