import { Command, InvalidArgumentError } from 'commander';

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

await program.parseAsync();
