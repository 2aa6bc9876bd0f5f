/**
 * The baseline users write today: node:http + onnxruntime-node, one `await session.run` per request,
 * OIP v2 JSON in and out. No routing, validation, metrics or logs: the floor our server is measured against.
 * Usage: tsx scripts/bench/baseline-server.ts <model.onnx> <port> [session options as JSON]
 */
import http from 'node:http';
import * as ort from 'onnxruntime-node';

const [file, port, options] = process.argv.slice(2);
const session = await ort.InferenceSession.create(file!, options ? JSON.parse(options) : {});

http
  .createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString());
        const feeds: Record<string, ort.Tensor> = {};
        for (const input of body.inputs) feeds[input.name] = new ort.Tensor('float32', Float32Array.from(input.data.flat()), input.shape);
        const outputs = await session.run(feeds);
        const result = {
          model_name: 'anomaly',
          outputs: Object.entries(outputs).map(([name, tensor]) => ({
            name,
            shape: tensor.dims,
            datatype: tensor.type === 'bool' ? 'BOOL' : 'FP32',
            data: Array.from(tensor.data as Float32Array, (value) => (tensor.type === 'bool' ? value !== 0 : value)),
          })),
        };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(result));
      } catch (error) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: String(error) }));
      }
    });
  })
  .listen(Number(port), '127.0.0.1', () => console.log('listening'));
