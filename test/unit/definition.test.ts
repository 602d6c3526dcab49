import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DefinitionError } from '../../functions/errors.ts';
import { matchesInput, parsePipeline } from '../../functions/pipeline/definition.ts';
import { accessLogs } from '../support/fixtures.ts';

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
