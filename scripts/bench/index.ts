/** `npm run bench`: every benchmark, each measuring modelfn and its named baseline in the same run. */
import { benchAwsColdStart } from './aws-cold-start.ts';
import { benchAwsSqsBatch } from './aws-sqs-batch.ts';
import { benchBatchAnomaly } from './batch-anomaly.ts';
import { benchCoreOverhead } from './core-overhead.ts';
import { benchHttpAnomaly } from './http-anomaly.ts';
import { benchJobsAnomaly } from './jobs-anomaly.ts';
import { machineLine } from './support.ts';

console.log(`modelfn benchmarks — ${machineLine()} — ${new Date().toISOString()}`);
for (const bench of [benchCoreOverhead, benchHttpAnomaly, benchJobsAnomaly, benchBatchAnomaly, benchAwsSqsBatch, benchAwsColdStart]) {
  for (const line of await bench()) console.log(line);
}
