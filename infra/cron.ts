/**
 * Pipelines declare schedules as 5-field cron (minute hour day-of-month month day-of-week),
 * the form the embedded runtime runs. EventBridge Scheduler wants 6 fields
 * (`cron(minute hour day-of-month month day-of-week year)`), numbers its weekdays 1-7 from
 * Sunday, and needs `?` in one of the two day fields. This converts one into the other.
 */
import { DefinitionError } from '../functions/errors.ts';

interface Field {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
}

const MINUTE: Field = { name: 'minute', min: 0, max: 59 };
const HOUR: Field = { name: 'hour', min: 0, max: 23 };
const DAY_OF_MONTH: Field = { name: 'day-of-month', min: 1, max: 31 };
const MONTH: Field = {
  name: 'month',
  min: 1,
  max: 12,
  names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'],
};
/** 0 and 7 are both Sunday in 5-field cron. */
const DAY_OF_WEEK: Field = {
  name: 'day-of-week',
  min: 0,
  max: 7,
  names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'],
};

/** One comma-separated item: `*`, `n`, `a-b`, each optionally with `/step`. */
interface Item {
  readonly from: number | '*';
  readonly to?: number;
  readonly step?: number;
}

const ITEM = /^(\*|[0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?(?:\/([0-9]+))?$/;

function value(text: string, field: Field, expression: string): number {
  const named = field.names?.indexOf(text.toUpperCase()) ?? -1;
  const n = named >= 0 ? named + (field === MONTH ? 1 : 0) : /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (Number.isNaN(n) || n < field.min || n > field.max) {
    throw new DefinitionError(`cron "${expression}": ${field.name} "${text}" is not in ${field.min}-${field.max}`);
  }
  return n;
}

function parseField(text: string, field: Field, expression: string): Item[] {
  return text.split(',').map((part) => {
    const match = ITEM.exec(part);
    if (!match) throw new DefinitionError(`cron "${expression}": ${field.name} "${part}" is not valid cron syntax`);
    const [, fromText = '', toText, stepText] = match;
    if (fromText === '*' && toText !== undefined) {
      throw new DefinitionError(`cron "${expression}": ${field.name} "${part}": a range cannot start with *`);
    }
    const step = stepText === undefined ? undefined : Number(stepText);
    if (step !== undefined && (step < 1 || step > field.max)) {
      throw new DefinitionError(`cron "${expression}": ${field.name} step "${stepText}" is not in 1-${field.max}`);
    }
    const from = fromText === '*' ? '*' : value(fromText, field, expression);
    const to = toText === undefined ? undefined : value(toText, field, expression);
    if (typeof from === 'number' && to !== undefined && to < from) {
      throw new DefinitionError(`cron "${expression}": ${field.name} range "${part}" runs backwards`);
    }
    return { from, ...(to === undefined ? {} : { to }), ...(step === undefined ? {} : { step }) };
  });
}

/** Every value an item selects (`a/n` runs to the field's end, as in cron). */
function expand(item: Item, field: Field): number[] {
  const from = item.from === '*' ? field.min : item.from;
  const to = item.to ?? (item.from === '*' || item.step !== undefined ? field.max : from);
  const out: number[] = [];
  for (let n = from; n <= to; n += item.step ?? 1) out.push(n);
  return out;
}

/** Minute, hour, day-of-month and month keep their form, except that a stepped `*` starts at the field's minimum and stepped ranges become lists. */
function render(items: readonly Item[], field: Field): string {
  return items
    .map((item) => {
      if (item.from === '*') return item.step === undefined ? '*' : `${field.min}/${item.step}`;
      if (item.to === undefined) return item.step === undefined ? `${item.from}` : `${item.from}/${item.step}`;
      return item.step === undefined ? `${item.from}-${item.to}` : expand(item, field).join(',');
    })
    .join(',');
}

/** Weekdays as EventBridge numbers (1 = Sunday ... 7 = Saturday), runs of three or more as ranges. */
function renderDaysOfWeek(items: readonly Item[], expression: string): string {
  const days = [...new Set(items.flatMap((item) => expand(item, DAY_OF_WEEK)).map((d) => (d % 7) + 1))].sort(
    (a, b) => a - b,
  );
  if (days.length === 0) throw new DefinitionError(`cron "${expression}": day-of-week selects no day`);
  const runs: string[] = [];
  for (let i = 0; i < days.length; ) {
    let j = i;
    while (j + 1 < days.length && days[j + 1] === (days[j] ?? 0) + 1) j++;
    const first = days[i];
    const last = days[j];
    if (j - i >= 2) runs.push(`${first}-${last}`);
    else runs.push(...days.slice(i, j + 1).map(String));
    i = j + 1;
  }
  return runs.join(',');
}

/**
 * Converts a 5-field cron expression to an EventBridge Scheduler expression, e.g.
 * `0 20 * * *` to `cron(0 20 * * ? *)` and `30 6 * * 1-5` to `cron(30 6 ? * 2-6 *)`.
 *
 * Throws a DefinitionError for invalid syntax, and when both day-of-month and day-of-week
 * are restricted: cron runs on either, EventBridge cannot express that.
 */
export function toEventBridgeCron(expression: string): string {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) {
    throw new DefinitionError(
      `cron "${expression}" must have 5 fields (minute hour day-of-month month day-of-week); it has ${fields.length}`,
    );
  }
  const [minute = '', hour = '', dayOfMonth = '', month = '', dayOfWeek = ''] = fields;
  const parsed = {
    minute: parseField(minute, MINUTE, expression),
    hour: parseField(hour, HOUR, expression),
    dayOfMonth: parseField(dayOfMonth, DAY_OF_MONTH, expression),
    month: parseField(month, MONTH, expression),
    dayOfWeek: parseField(dayOfWeek, DAY_OF_WEEK, expression),
  };
  if (dayOfMonth !== '*' && dayOfWeek !== '*') {
    throw new DefinitionError(
      `cron "${expression}": restrict day-of-month or day-of-week, not both (cron runs on either day, which EventBridge cannot express)`,
    );
  }
  const days =
    dayOfWeek === '*'
      ? [render(parsed.dayOfMonth, DAY_OF_MONTH), '?']
      : ['?', renderDaysOfWeek(parsed.dayOfWeek, expression)];
  return `cron(${[render(parsed.minute, MINUTE), render(parsed.hour, HOUR), days[0], render(parsed.month, MONTH), days[1], '*'].join(' ')})`;
}
