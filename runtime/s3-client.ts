import { S3Client } from '@aws-sdk/client-s3';

/**
 * The runtime's own client for the embedded S3. The server also accepts the SDK's default
 * aws-chunked/CRC32 uploads; plain bodies keep requests simple to debug.
 */
export function localS3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'sluice-local', secretAccessKey: 'sluice-local' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
