import { GetObjectCommand, PutObjectCommand, S3ServiceException, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';

/** The few S3 object operations the job ports need, JSON in and out, with S3's "no such key" as undefined. */
export class JsonObjects {
  constructor(
    readonly s3: S3Client,
    readonly bucket: string,
  ) {}

  async getText(key: string): Promise<string | undefined> {
    try {
      const object = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return await object.Body!.transformToString('utf8');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async getJson<T>(key: string): Promise<T | undefined> {
    const text = await this.getText(key);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  async putText(key: string, body: string, options: Pick<PutObjectCommandInput, 'IfNoneMatch' | 'ContentType'> = {}): Promise<void> {
    await this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json', ...options }));
  }

  /** Where an object is, for log lines and error messages. */
  url(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.$metadata.httpStatusCode === 404);
}

/** S3 refused a conditional write: the object exists (412), or a concurrent conditional write to it is in progress (409). */
export function isConditionFailed(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'PreconditionFailed' || error.name === 'ConditionalRequestConflict' || error.$metadata.httpStatusCode === 412);
}
