import { createReadStream } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

/** Uploads a file through the S3 API (multipart above 8 MB, like the AWS CLI). */
export async function uploadFile(s3: S3Client, bucket: string, key: string, file: string): Promise<void> {
  await new Upload({
    client: s3,
    params: { Bucket: bucket, Key: key, Body: createReadStream(file) },
    partSize: 8 * 1024 * 1024,
  }).done();
}
