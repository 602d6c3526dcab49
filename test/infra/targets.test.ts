/**
 * One app, two templates: `npx cdk synth` (AWS) and `npx cdk synth -c target=localstack`.
 * They must differ only where LocalStack needs it (infra/target.ts), and a mistyped context
 * value must fail the synth instead of silently building the AWS template.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/asl.ts';
import { bundlingEnvironment } from '../../infra/handlers.ts';
import { readTargetSettings } from '../../infra/target.ts';
import { type Resources, stateMachineOf, synthStack } from './fixture.ts';

const context =
  (values: Record<string, unknown>) =>
  (key: string): unknown =>
    values[key];

describe('context settings', () => {
  it('default to AWS, arm64, no Lake Formation', () => {
    expect(readTargetSettings(context({}), 'x86_64')).toEqual({
      target: 'aws',
      architecture: 'arm64',
      lakeFormation: false,
    });
  });

  it("build for the host's architecture on LocalStack unless told otherwise", () => {
    expect(readTargetSettings(context({ target: 'localstack' }), 'x86_64').architecture).toBe('x86_64');
    expect(readTargetSettings(context({ target: 'localstack' }), 'arm64').architecture).toBe('arm64');
    expect(readTargetSettings(context({ target: 'localstack', architecture: 'arm64' }), 'x86_64').architecture).toBe(
      'arm64',
    );
    expect(readTargetSettings(context({ architecture: 'x86_64' }), 'arm64').architecture).toBe('x86_64');
  });

  it('read lakeFormation from -c (a string) or cdk.json (a boolean)', () => {
    expect(readTargetSettings(context({ lakeFormation: 'true' })).lakeFormation).toBe(true);
    expect(readTargetSettings(context({ lakeFormation: false })).lakeFormation).toBe(false);
  });

  it.each([
    [{ target: 'localstak' }, /context setting target: "localstak" is not one of aws, localstack/],
    [{ architecture: 'amd64' }, /context setting architecture: "amd64" is not one of arm64, x86_64/],
    [{ lakeFormation: 'yes' }, /context setting lakeFormation: "yes" is not true or false/],
  ])('reject %o, naming the setting', (values, message) => {
    expect(() => readTargetSettings(context(values))).toThrow(message);
  });
});

describe('the functions', () => {
  const architectures = (props: Parameters<typeof synthStack>[0]) =>
    Object.values(synthStack(props).template.findResources('AWS::Lambda::Function') as Resources).map(
      (fn) => fn.Properties.Architectures,
    );

  it('run on the architecture asked for', () => {
    expect(new Set(architectures({}).map(String))).toEqual(new Set(['arm64']));
    expect(new Set(architectures({ target: 'localstack', architecture: 'x86_64' }).map(String))).toEqual(
      new Set(['x86_64']),
    );
  });

  it("install DuckDB's binding for Linux, the functions' CPU and glibc, whatever the build host", () => {
    expect(bundlingEnvironment('arm64')).toEqual({
      npm_config_os: 'linux',
      npm_config_cpu: 'arm64',
      npm_config_libc: 'glibc',
    });
    expect(bundlingEnvironment('x86_64')).toEqual({
      npm_config_os: 'linux',
      npm_config_cpu: 'x64',
      npm_config_libc: 'glibc',
    });
  });
});

/** Every path at which two JSON values differ. */
function differences(a: unknown, b: unknown, path = ''): string[] {
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) =>
      differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}/${k}`),
    );
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [path];
}

describe('the LocalStack template', () => {
  const aws = synthStack().template;
  // Same architecture as the AWS template, to see the other differences.
  const localstack = synthStack({ target: 'localstack', architecture: 'arm64' }).template;

  it('runs Distributed Map children as STANDARD executions; the AWS template keeps EXPRESS', () => {
    const type = (t: typeof aws) =>
      (stateMachineOf(t).properties.DefinitionSubstitutions as Record<string, unknown>).ChildExecutionType;
    expect(type(aws)).toBe('EXPRESS');
    expect(type(localstack)).toBe('STANDARD');
  });

  it('differs from the AWS template only in the child execution type and path-style S3 for the functions', () => {
    const paths = differences(aws.toJSON(), localstack.toJSON());
    const unexpected = paths.filter(
      (p) =>
        !/^\/Resources\/Pipeline[0-9A-F]{8}\/Properties\/DefinitionSubstitutions\/ChildExecutionType$/.test(p) &&
        !/^\/Resources\/Handlers\w+\/Properties\/Environment\/Variables\/SLUICE_S3_FORCE_PATH_STYLE$/.test(p),
    );
    expect(unexpected).toEqual([]);
    expect(paths.filter((p) => p.endsWith('SLUICE_S3_FORCE_PATH_STYLE'))).toHaveLength(6);
  });
});

describe('npm run localstack:deploy', () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
    devDependencies: Record<string, string>;
  };

  it('deploys the LocalStack template with cdklocal from aws-cdk-local', () => {
    expect(pkg.scripts['localstack:deploy']).toMatch(/\bcdklocal deploy -c target=localstack\b/);
    expect(pkg.devDependencies['aws-cdk-local']).toBeDefined();
    expect(pkg.scripts.synth).not.toMatch(/target=/);
  });
});
