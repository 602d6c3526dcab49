/**
 * Where the stack is deployed, and what that changes. One CDK app builds both templates:
 * `npx cdk synth` (AWS) and `npx cdk synth -c target=localstack` (what `npm run localstack:deploy`
 * deploys with cdklocal). They differ only where LocalStack needs it (docs/localstack.md):
 *
 * - Distributed Map children run as STANDARD executions: LocalStack's ASL grammar accepts only
 *   `"ExecutionType": "STANDARD"` in a Distributed Map's ProcessorConfig (CreateStateMachine
 *   fails with `mismatched input '"EXPRESS"' expecting '"STANDARD"'`). AWS keeps EXPRESS children,
 *   which cost far less per chunk than STANDARD state transitions.
 * - Functions are built for the host's architecture by default (LocalStack runs them in containers
 *   of the host's architecture; arm64 functions on an x86_64 host need emulation), with DuckDB's
 *   matching native binding. AWS defaults to arm64 (Graviton is about 20% cheaper per GB-second).
 * - The functions' S3 clients use path-style addressing on LocalStack.
 */
import { ConfigError } from '../functions/errors.ts';

export type Target = 'aws' | 'localstack';
export type CpuArchitecture = 'arm64' | 'x86_64';
/** How a Distributed Map runs its children (`ProcessorConfig.ExecutionType`). */
export type ChildExecutionType = 'EXPRESS' | 'STANDARD';

export const TARGETS: readonly Target[] = ['aws', 'localstack'];
export const ARCHITECTURES: readonly CpuArchitecture[] = ['arm64', 'x86_64'];

/** The settings of the CDK app that come from context (`-c key=value` or cdk.json). */
export interface TargetSettings {
  readonly target: Target;
  readonly architecture: CpuArchitecture;
  /** The account uses Lake Formation permissions for the Data Catalog: Athena needs `lakeformation:GetDataAccess`. */
  readonly lakeFormation: boolean;
}

/** The architecture of the machine running the synth, as Lambda names it. */
export function hostArchitecture(arch: string = process.arch): CpuArchitecture {
  return arch === 'arm64' ? 'arm64' : 'x86_64';
}

/** EXPRESS children on AWS; STANDARD on LocalStack, whose ASL grammar accepts nothing else. */
export function childExecutionType(target: Target): ChildExecutionType {
  return target === 'localstack' ? 'STANDARD' : 'EXPRESS';
}

/** npm's name for an architecture (`npm_config_cpu`), which selects DuckDB's native binding package. */
export function npmCpu(architecture: CpuArchitecture): 'arm64' | 'x64' {
  return architecture === 'arm64' ? 'arm64' : 'x64';
}

function oneOf<T extends string>(setting: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(
    `context setting ${setting}: ${JSON.stringify(value)} is not one of ${allowed.join(', ')} (e.g. -c ${setting}=${allowed[0]})`,
  );
}

function flag(setting: string, value: unknown): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new ConfigError(`context setting ${setting}: ${JSON.stringify(value)} is not true or false`);
}

/**
 * Reads `target`, `architecture` and `lakeFormation` from the app's context and rejects a value
 * it does not know, naming the setting (a typo must not silently build the AWS template).
 */
export function readTargetSettings(
  context: (key: string) => unknown,
  host: CpuArchitecture = hostArchitecture(),
): TargetSettings {
  const target = oneOf('target', context('target'), TARGETS) ?? 'aws';
  const architecture =
    oneOf('architecture', context('architecture'), ARCHITECTURES) ?? (target === 'localstack' ? host : 'arm64');
  const lakeFormation = flag('lakeFormation', context('lakeFormation')) ?? false;
  return { target, architecture, lakeFormation };
}
