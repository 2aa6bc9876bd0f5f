import { Command, InvalidArgumentError, Option } from 'commander';

const program = new Command('modelfn').description('Serve ONNX models real-time, async, batch and serverless from one definition.');

const port = (value: string) => {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) throw new InvalidArgumentError('expected a port number 0-65535');
  return String(parsed);
};

program
  .command('serve')
  .description('the local real-time server (what `npm start` runs)')
  .option('-p, --port <port>', 'port to listen on', port, process.env.PORT ?? '8080')
  .option('--host <host>', 'address to bind', process.env.HOST ?? '127.0.0.1')
  .option('--models <dir>', 'folder of model folders (default: the bundled examples)')
  .option('--preload', 'load every model before listening')
  .action(async (options: { port: string; host: string; models?: string; preload?: boolean }) => {
    process.env.PORT = options.port;
    process.env.HOST = options.host;
    if (options.models) process.env.MODELFN_MODELS_DIR = options.models;
    if (options.preload) process.env.MODELFN_PRELOAD = '1';
    await import('../adapters/local/main.ts');
  });

const positiveInt = (value: string) => {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return parsed;
};

program
  .command('batch')
  .description('run a model over a JSONL or CSV file: results to --output, bad records to <output>.errors.jsonl')
  .argument('<model>', 'model name (a folder under --models)')
  .requiredOption('-i, --input <file>', 'input file: JSON lines (.jsonl, .ndjson, .json) or CSV with a header row (.csv)')
  .requiredOption('-o, --output <file>', 'output JSONL file, one {"id","line","prediction"} per record, in input order')
  .addOption(new Option('--format <format>', 'input format (default: from the extension)').choices(['jsonl', 'csv']))
  .option('--batch-size <n>', 'records per chunk, one tensor run each', positiveInt, 256)
  .option('--workers <n>', 'worker threads, each with its own model session (default: the number of cores)', positiveInt)
  .option('--id-field <name>', 'field holding a record\'s id; records without it are named by line number', 'id')
  .option('--models <dir>', 'folder of model folders (default: the bundled examples)')
  .option('--resume', 'continue an interrupted run from <output>.checkpoint.json')
  .addHelpText('after', '\nExit status: 0 every record succeeded, 2 some records failed (see the errors file), 1 fatal error, 130/143 interrupted (resumable).')
  .action(async (model: string, options: { input: string; output: string; format?: 'jsonl' | 'csv'; batchSize: number; workers?: number; idField: string; models?: string; resume?: boolean }) => {
    const { runBatch } = await import('./batch.ts');
    process.exitCode = await runBatch(model, options);
  });

await program.parseAsync();
