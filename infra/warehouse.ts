import { type RemovalPolicy, Stack } from 'aws-cdk-lib';
import { CfnWorkGroup } from 'aws-cdk-lib/aws-athena';
import { CfnDatabase } from 'aws-cdk-lib/aws-glue';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ATHENA_RESULTS_PREFIX } from './storage.ts';

export interface WarehouseProps {
  readonly databaseName: string;
  readonly workGroupName: string;
  readonly workingBucket: IBucket;
  readonly bytesScannedCutoffPerQuery: number;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The Glue database and the Athena workgroup the state machine's queries run in.
 *
 * The tables are not declared here: Iceberg tables created as `AWS::Glue::Table` break on
 * update, so the state machine's Load state runs each pipeline's `CREATE TABLE IF NOT EXISTS`
 * (and `ALTER TABLE ... ADD COLUMNS`) DDL through Athena before its first load, and again
 * whenever the pipeline's table definition changes.
 *
 * Both names default to names unique per stack instance (see `SluiceStack`): the database is
 * retained when the stack is deleted, and a new instance must not fail on its name.
 */
export class Warehouse extends Construct {
  readonly databaseName: string;
  readonly workGroupName: string;
  readonly database: CfnDatabase;
  readonly workGroup: CfnWorkGroup;

  constructor(scope: Construct, id: string, props: WarehouseProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.databaseName = props.databaseName;
    this.workGroupName = props.workGroupName;

    this.database = new CfnDatabase(this, 'Database', {
      catalogId: stack.account,
      databaseInput: { name: props.databaseName, description: 'Sluice warehouse: Iceberg tables and staging tables' },
    });
    this.database.applyRemovalPolicy(props.removalPolicy);

    this.workGroup = new CfnWorkGroup(this, 'WorkGroup', {
      name: props.workGroupName,
      description: 'Sluice loads: setup DDL, MERGE into Iceberg, derived tables',
      state: 'ENABLED',
      // Deleting the stack deletes the query history too, instead of failing on a non-empty workgroup.
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        bytesScannedCutoffPerQuery: props.bytesScannedCutoffPerQuery,
        engineVersion: { selectedEngineVersion: 'Athena engine version 3' },
        resultConfiguration: {
          outputLocation: props.workingBucket.s3UrlForObject(ATHENA_RESULTS_PREFIX),
          encryptionConfiguration: { encryptionOption: 'SSE_S3' },
        },
      },
    });
  }

  /** ARNs of the workgroup, the catalog, the database and its tables. */
  get arns() {
    const stack = Stack.of(this);
    const glue = (resource: string, resourceName?: string) =>
      stack.formatArn({ service: 'glue', resource, ...(resourceName === undefined ? {} : { resourceName }) });
    return {
      workGroup: stack.formatArn({ service: 'athena', resource: 'workgroup', resourceName: this.workGroupName }),
      catalog: glue('catalog'),
      database: glue('database', this.databaseName),
      tables: glue('table', `${this.databaseName}/*`),
    };
  }
}
