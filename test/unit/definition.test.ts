import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DefinitionError } from '../../functions/errors.ts';
import { checkTransforms } from '../../functions/pipeline/check-transform.ts';
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

describe('checkTransforms', () => {
  it('accepts the access-logs transform', async () => {
    await expect(checkTransforms([accessLogs])).resolves.toBeUndefined();
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
