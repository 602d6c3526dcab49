import { describe, expect, it } from 'vitest';
import { toEventBridgeCron } from '../../infra/cron.ts';

describe('toEventBridgeCron', () => {
  it.each([
    ['0 20 * * *', 'cron(0 20 * * ? *)'],
    ['*/15 * * * *', 'cron(0/15 * * * ? *)'],
    ['5,35 8-18 * * *', 'cron(5,35 8-18 * * ? *)'],
    ['0 3 1 * *', 'cron(0 3 1 * ? *)'],
    ['0 3 1,15 jan,jul *', 'cron(0 3 1,15 1,7 ? *)'],
    ['0 0 */2 * *', 'cron(0 0 1/2 * ? *)'],
    ['0 9-17/4 * * *', 'cron(0 9,13,17 * * ? *)'],
  ])('converts %s (every day or days of the month) to %s', (cron, expected) => {
    expect(toEventBridgeCron(cron)).toBe(expected);
  });

  it.each([
    ['30 6 * * 1-5', 'cron(30 6 ? * 2-6 *)'],
    ['0 12 * * 0', 'cron(0 12 ? * 1 *)'],
    ['0 12 * * 7', 'cron(0 12 ? * 1 *)'],
    ['0 12 * * 6,0', 'cron(0 12 ? * 1,7 *)'],
    ['0 12 * * 5-7', 'cron(0 12 ? * 1,6,7 *)'],
    ['0 12 * * MON-FRI', 'cron(0 12 ? * 2-6 *)'],
    ['0 12 * * sun', 'cron(0 12 ? * 1 *)'],
    ['0 12 * * */2', 'cron(0 12 ? * 1,3,5,7 *)'],
  ])('converts %s (days of the week, Sunday = 0) to %s (Sunday = 1)', (cron, expected) => {
    expect(toEventBridgeCron(cron)).toBe(expected);
  });

  it.each([
    ['0 20 * *', /5 fields/],
    ['0 20 * * * *', /5 fields/],
    ['60 20 * * *', /minute "60" is not in 0-59/],
    ['0 24 * * *', /hour "24" is not in 0-23/],
    ['0 0 0 * *', /day-of-month "0" is not in 1-31/],
    ['0 0 * 13 *', /month "13" is not in 1-12/],
    ['0 0 * * 8', /day-of-week "8" is not in 0-7/],
    ['0 0 * * funday', /day-of-week "funday"/],
    ['0 0 L * *', /day-of-month "L"/],
    ['0 18-9 * * *', /runs backwards/],
    ['*/0 * * * *', /step "0"/],
    ['0 0 1 * 1', /day-of-month or day-of-week, not both/],
  ])('rejects %s', (cron, message) => {
    expect(() => toEventBridgeCron(cron)).toThrow(message);
  });

  it('reports a DefinitionError, the error Sluice uses for bad pipeline files', () => {
    expect(() => toEventBridgeCron('0 0 1 * 1')).toThrow(expect.objectContaining({ name: 'Sluice.DefinitionError' }));
  });
});
