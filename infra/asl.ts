import { fileURLToPath } from 'node:url';

/** The repository root: the CDK app resolves `pipelines/`, `functions/` and the ASL file from here. */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

const PLACEHOLDER = /\$\{([A-Za-z][A-Za-z0-9_]*)\}/g;

/** The `${Name}` placeholders of an ASL document, sorted and without repeats. */
export function aslPlaceholders(definition: string): string[] {
  return [...new Set([...definition.matchAll(PLACEHOLDER)].map((m) => m[1] ?? ''))].sort();
}
