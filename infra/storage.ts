import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type BucketProps,
  type CfnBucket,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { MAP_RESULTS_PREFIX } from '../functions/catalog.ts';

export interface StorageProps {
  /** What happens to the buckets when the stack is deleted (DESTROY only succeeds on empty buckets). */
  readonly removalPolicy: RemovalPolicy;
}

/** Prefix of Athena query results in the working bucket (the workgroup writes there). */
export const ATHENA_RESULTS_PREFIX = 'athena-results/';

/**
 * The four buckets: input (files land here), working (manifests, staging, rejects, run
 * records, Athena results), warehouse (Iceberg data and metadata), and the server access
 * logs of the other three. All private, encrypted, TLS only.
 */
export class Storage extends Construct {
  readonly input: Bucket;
  readonly working: Bucket;
  readonly warehouse: Bucket;
  readonly accessLogs: Bucket;

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id);
    const common = {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: props.removalPolicy,
    } satisfies BucketProps;
    const abortUploads = { abortIncompleteMultipartUploadAfter: Duration.days(7) };

    // Server access logs must be SSE-S3 (log delivery cannot use a KMS key); they are not logged themselves.
    this.accessLogs = new Bucket(this, 'AccessLogs', {
      ...common,
      lifecycleRules: [{ ...abortUploads, expiration: Duration.days(365) }],
    });
    const logged = (prefix: string) => ({ serverAccessLogsBucket: this.accessLogs, serverAccessLogsPrefix: prefix });

    // Versioned: an overwritten or deleted input can be recovered, and its version id is part of row lineage.
    this.input = new Bucket(this, 'Input', {
      ...common,
      ...logged('input/'),
      versioned: true,
      lifecycleRules: [{ ...abortUploads, noncurrentVersionExpiration: Duration.days(30) }],
    });
    // Through the L1: `eventBridgeEnabled` on the L2 adds a custom resource, which LocalStack skips.
    (this.input.node.defaultChild as CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };

    // Not versioned: staging and rejects are rewritten and deleted on every run; versions would pile up.
    this.working = new Bucket(this, 'Working', {
      ...common,
      ...logged('working/'),
      lifecycleRules: [
        abortUploads,
        { prefix: ATHENA_RESULTS_PREFIX, expiration: Duration.days(30) },
        { prefix: 'manifests/', expiration: Duration.days(90) },
        // The Distributed Map's ResultWriter leaves a manifest and result files per run; Verify reads the
        // chunk results from the run folder instead, so these are only for looking into a run.
        { prefix: `${MAP_RESULTS_PREFIX}/`, expiration: Duration.days(30) },
      ],
    });

    // Versioned: protects table files from a mistaken delete; Iceberg snapshots handle time travel.
    this.warehouse = new Bucket(this, 'Warehouse', {
      ...common,
      ...logged('warehouse/'),
      versioned: true,
      lifecycleRules: [{ ...abortUploads, noncurrentVersionExpiration: Duration.days(30) }],
    });
  }
}
