/**
 * Table evolution: what to do when a pipeline's definition changes after its tables exist.
 * `CREATE TABLE IF NOT EXISTS` does nothing to a table that exists, so a column added to the
 * definition would never reach the table and the next MERGE, naming it, would fail. Athena
 * evolves a table in place with `ALTER TABLE ... ADD COLUMNS`, for Iceberg tables
 * (https://docs.aws.amazon.com/athena/latest/ug/querying-iceberg-alter-table-add-columns.html)
 * and the Hive (staging) tables alike; Iceberg schema updates are metadata only
 * (https://docs.aws.amazon.com/athena/latest/ug/querying-iceberg-evolving-table-schema.html).
 *
 * Sluice applies one kind of change by itself: columns appended at the end of a table's
 * column list. Anything else (a column removed, renamed, retyped or moved, a different
 * partitionDay) would need a data migration or would silently misread old files, so it is
 * refused with a DefinitionError naming the table and column, at two points:
 * - at synth and at runtime start, against the committed lock file
 *   `pipelines/<name>.tables.json` ({@link checkTableLock});
 * - when a run plans its setup, against the shapes last applied to the warehouse, which the
 *   run records in the working bucket ({@link setupStatementsFor}, {@link shapesToRecord}).
 *
 * A shape is the definition's own column list of each table: for the main table that is
 * `table.columns` without the lineage columns (which Sluice appends and never changes), so
 * a column added to the definition after the lineage columns of an existing table is still
 * "appended"; every statement names its columns, so their physical order does not matter.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DefinitionError } from '../errors.ts';
import type { Column, Pipeline } from './definition.ts';
import { addColumnsStatement, ddlType, type Locations, REJECT_COLUMNS, setupStatements, tableNames } from './sql.ts';

export interface ColumnShape {
  readonly name: string;
  /** The Athena DDL type, e.g. `int`, `decimal(10, 2)`, `timestamp`. */
  readonly type: string;
}

export interface TableShape {
  readonly name: string;
  readonly columns: readonly ColumnShape[];
  /** The main table only: the column of its `day()` partition. */
  readonly partitionDay?: string;
}

/** The shapes of a pipeline's tables, as applied to the warehouse or as committed in the lock file. */
export interface TableShapes {
  readonly pipeline: string;
  readonly tables: readonly TableShape[];
}

const shapesSchema = z.object({
  pipeline: z.string(),
  tables: z.array(
    z.strictObject({
      name: z.string(),
      columns: z.array(z.strictObject({ name: z.string(), type: z.string() })),
      partitionDay: z.string().optional(),
    }),
  ),
});

const shapeOf = (columns: readonly Column[]): ColumnShape[] => columns.map((c) => ({ name: c.name, type: ddlType(c) }));

/** The shapes of the tables the definition describes: the main table, its rejects and the derived tables. */
export function tableShapes(p: Pipeline): TableShapes {
  const t = tableNames(p);
  return {
    pipeline: p.name,
    tables: [
      { name: t.main, columns: shapeOf(p.table.columns), partitionDay: p.table.partitionDay },
      { name: t.rejects, columns: shapeOf(REJECT_COLUMNS) },
      ...p.derived.map((d) => ({ name: d.name, columns: shapeOf(d.columns) })),
    ],
  };
}

/** Columns appended to one table. */
interface Addition {
  readonly table: string;
  readonly columns: readonly Column[];
}

const describe = (c: ColumnShape, i: number) => `"${c.name}" (${c.type}, column ${i + 1})`;

/**
 * Compares the definition with the shapes last applied (or committed). Returns the columns
 * appended to each table; throws a DefinitionError for any other change. `against` names what
 * the shapes come from, for the message.
 */
function compare(p: Pipeline, applied: TableShapes | undefined, against: string): Addition[] {
  if (!applied) return [];
  const current = tableShapes(p);
  const problems: string[] = [];
  const additions: Addition[] = [];
  const definitionColumns = new Map<string, readonly Column[]>([
    [p.table.name, p.table.columns],
    [tableNames(p).rejects, REJECT_COLUMNS],
    ...p.derived.map((d): [string, readonly Column[]] => [d.name, d.columns]),
  ]);
  for (const table of current.tables) {
    const before = applied.tables.find((s) => s.name === table.name);
    if (!before) continue; // A new table: CREATE TABLE IF NOT EXISTS makes it.
    const where = `table ${table.name} of pipeline ${p.name} (${p.file})`;
    if (before.partitionDay !== table.partitionDay) {
      problems.push(
        `${where}: partitionDay was "${before.partitionDay ?? '(none)'}" and is now "${table.partitionDay ?? '(none)'}"; ` +
          'a table cannot change its partition column in place: put partitionDay back, or load into a new table (a new table.name)',
      );
    }
    const oldNames = new Set(before.columns.map((c) => c.name));
    const newNames = new Set(table.columns.map((c) => c.name));
    before.columns.forEach((old, i) => {
      if (newNames.has(old.name)) return;
      const now = table.columns[i];
      problems.push(
        now && !oldNames.has(now.name)
          ? `${where}: column ${describe(old, i)} was removed or renamed to "${now.name}"; ` +
              `columns cannot be removed or renamed: put "${old.name}" back, and add "${now.name}" at the end`
          : `${where}: column ${describe(old, i)} was removed; ` +
              `columns cannot be removed: put "${old.name}" back (a column the transform leaves NULL costs nothing)`,
      );
    });
    for (const old of before.columns) {
      const now = table.columns.find((c) => c.name === old.name);
      if (now && now.type !== old.type) {
        problems.push(
          `${where}: column "${old.name}" was ${old.type} and is now ${now.type}; ` +
            `a column's type cannot change: put ${old.type} back, or add a new column at the end`,
        );
      }
    }
    // The columns both have must keep their order, and come before every new column.
    const kept = before.columns.filter((c) => newNames.has(c.name));
    const keptNow = table.columns.filter((c) => oldNames.has(c.name));
    const moved = kept.findIndex((c, i) => keptNow[i]?.name !== c.name);
    if (moved >= 0) {
      const old = kept[moved] as ColumnShape;
      problems.push(
        `${where}: column ${describe(old, before.columns.indexOf(old))} moved to column ${table.columns.findIndex((c) => c.name === old.name) + 1}; ` +
          'columns cannot be reordered: keep the existing columns in their order and add new ones at the end',
      );
    }
    const lastKept = Math.max(-1, ...keptNow.map((c) => table.columns.indexOf(c)));
    table.columns.forEach((c, i) => {
      if (!oldNames.has(c.name) && i < lastKept && !problems.some((x) => x.includes(`renamed to "${c.name}"`))) {
        problems.push(
          `${where}: new column "${c.name}" is column ${i + 1}, before existing columns; ` +
            'a column can only be added at the end of the table: move it after the last column',
        );
      }
    });
    const appended = table.columns.filter((c) => !oldNames.has(c.name)).map((c) => c.name);
    if (appended.length > 0) {
      const columns = (definitionColumns.get(table.name) ?? []).filter((c) => appended.includes(c.name));
      additions.push({ table: table.name, columns });
    }
  }
  if (problems.length > 0) {
    throw new DefinitionError(
      `the tables of pipeline ${p.name} differ from ${against} in a way Sluice cannot apply ` +
        `(only columns added at the end of a table are):\n  ${problems.join('\n  ')}`,
    );
  }
  return additions;
}

/**
 * The setup statements of a run: `CREATE TABLE IF NOT EXISTS` for every table (a new table,
 * or the first run when `applied` is undefined), then `ALTER TABLE ... ADD COLUMNS` for the
 * columns appended since `applied`, to the table and, for the main table, to its staging
 * table. Throws a DefinitionError for any other change.
 */
export function setupStatementsFor(p: Pipeline, at: Locations, applied: TableShapes | undefined): string[] {
  const t = tableNames(p);
  const alters = compare(p, applied, 'the tables last set up in the warehouse').flatMap((a) =>
    a.table === t.main
      ? [addColumnsStatement(t.main, a.columns), addColumnsStatement(t.staging, a.columns)]
      : [addColumnsStatement(a.table, a.columns)],
  );
  return [...setupStatements(p, at), ...alters];
}

/**
 * The shapes to record once the setup statements have run: the definition's tables, plus
 * the tables of `applied` the definition no longer has (they stay in the warehouse, and
 * keeping their shapes checks them if they come back). Throws like {@link setupStatementsFor}.
 */
export function shapesToRecord(p: Pipeline, applied: TableShapes | undefined): TableShapes {
  compare(p, applied, 'the tables last set up in the warehouse');
  const current = tableShapes(p);
  const retired = (applied?.tables ?? []).filter((s) => !current.tables.some((c) => c.name === s.name));
  return { pipeline: p.name, tables: [...current.tables, ...retired] };
}

/** True when the setup statements must run: the first time, or when the definition's tables changed. */
export function needsSetup(p: Pipeline, applied: TableShapes | undefined): boolean {
  return applied === undefined || JSON.stringify(shapesToRecord(p, applied)) !== JSON.stringify(applied);
}

/** Reads recorded shapes (the working bucket's copy or a lock file); `source` names it in errors. */
export function parseTableShapes(text: string, source: string): TableShapes {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new DefinitionError(`${source} is not JSON: ${(error as Error).message}`);
  }
  const result = shapesSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new DefinitionError(
      `${source} is not a table lock: ${issue?.path.join('.') || '(top level)'}: ${issue?.message}`,
    );
  }
  return result.data;
}

/** The lock file of a pipeline: `<dir>/<name>.tables.json`. */
export const tableLockFile = (dir: string, pipeline: string) => join(dir, `${pipeline}.tables.json`);

const LOCK_NOTE =
  'Generated by Sluice from the pipeline definition: the shapes of its tables. Commit it. Columns may only be added at the end of a table; any other change is refused at synth and at start.';

/** The text of a lock file. */
export function tableLockContent(shapes: TableShapes): string {
  // One line per column, so that a diff of the lock shows each column added.
  const tables = shapes.tables.map((t) => {
    const columns = t.columns.map(
      (c) =>
        `        ${JSON.stringify(c).replaceAll('":', '": ').replaceAll(',"', ', "').replace(/^\{/, '{ ').replace(/\}$/, ' }')}`,
    );
    const partition = t.partitionDay === undefined ? '' : `,\n      "partitionDay": ${JSON.stringify(t.partitionDay)}`;
    return `    {\n      "name": ${JSON.stringify(t.name)},\n      "columns": [\n${columns.join(',\n')}\n      ]${partition}\n    }`;
  });
  return `{\n  "$comment": ${JSON.stringify(LOCK_NOTE)},\n  "pipeline": ${JSON.stringify(shapes.pipeline)},\n  "tables": [\n${tables.join(',\n')}\n  ]\n}\n`;
}

/** A lock file to write: new (no lock yet) or with columns added. */
export interface TableLockUpdate {
  readonly pipeline: string;
  readonly file: string;
  readonly content: string;
  /** `table.column` of each column added since the lock; empty for a new lock. */
  readonly added: readonly string[];
}

/**
 * Checks every pipeline against its committed lock file `<dir>/<name>.tables.json`.
 * Synchronous and free of AWS, so the CDK app (at synth) and the runtime (at start) both
 * call it. Returns the lock files to write: a pipeline without one, or with columns added
 * at the end of a table (the caller writes them, e.g. with {@link writeTableLocks}, and they
 * are committed with the definition). Throws a DefinitionError naming the table and column
 * for any other change.
 */
export function checkTableLock(
  pipelines: ReadonlyMap<string, Pipeline> | readonly Pipeline[],
  dir: string,
): TableLockUpdate[] {
  const list = Array.isArray(pipelines) ? pipelines : [...(pipelines as ReadonlyMap<string, Pipeline>).values()];
  const updates: TableLockUpdate[] = [];
  for (const p of list) {
    const file = tableLockFile(dir, p.name);
    const old = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    const locked = old === undefined ? undefined : parseTableShapes(old, file);
    if (locked && locked.pipeline !== p.name) {
      throw new DefinitionError(`${file} is the table lock of pipeline ${locked.pipeline}, not of ${p.name}`);
    }
    const additions = compare(p, locked, `its committed lock file ${file}`);
    const content = tableLockContent(shapesToRecord(p, locked));
    if (content !== old) {
      updates.push({
        pipeline: p.name,
        file,
        content,
        added: additions.flatMap((a) => a.columns.map((c) => `${a.table}.${c.name}`)),
      });
    }
  }
  return updates;
}

/** Writes the lock files {@link checkTableLock} returned. */
export function writeTableLocks(updates: readonly TableLockUpdate[]): void {
  for (const u of updates) writeFileSync(u.file, u.content);
}
