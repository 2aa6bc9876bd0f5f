// The baseline of the cold-start benchmark: a minimal Lambda handler around onnxruntime-node, as a user would write
// it by hand for the anomaly model — the session created at module scope, the OIP request parsed, one run, JSON out.
// The benchmark copies it beside the bundle, so it loads the same pruned onnxruntime-node and the same model file.
import { InferenceSession, Tensor } from 'onnxruntime-node';

const session = await InferenceSession.create(new URL('./models/anomaly/anomaly.onnx', import.meta.url).pathname, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
});

export const handler = async (event) => {
  const request = JSON.parse(event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body);
  const input = request.inputs[0];
  const outputs = await session.run({ [input.name]: new Tensor('float32', Float32Array.from(input.data.flat(Infinity)), input.shape) });
  const body = {
    model_name: 'anomaly',
    id: request.id,
    outputs: Object.entries(outputs).map(([name, tensor]) => ({
      name,
      shape: tensor.dims,
      datatype: tensor.type === 'bool' ? 'BOOL' : 'FP32',
      data: Array.from(tensor.data, (value) => (tensor.type === 'bool' ? value !== 0 : value)),
    })),
  };
  return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
};
