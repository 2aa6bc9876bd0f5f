import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** ONNX element types by onnxruntime type name. */
export const ELEMENT_TYPES = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  uint16: onnx.TensorProto.DataType.UINT16,
  int16: onnx.TensorProto.DataType.INT16,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  string: onnx.TensorProto.DataType.STRING,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
  float64: onnx.TensorProto.DataType.DOUBLE,
  uint32: onnx.TensorProto.DataType.UINT32,
  uint64: onnx.TensorProto.DataType.UINT64,
} as const;

export type ElementType = keyof typeof ELEMENT_TYPES;

/** A dimension: a fixed size, or a name for a symbolic (dynamic) one. */
type Dim = number | string;

function valueInfo(name: string, type: ElementType, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type],
        shape: { dim: dims.map((dim) => (typeof dim === 'number' ? { dimValue: dim } : { dimParam: dim })) },
      },
    },
  });
}

/** A model whose every output `<name>_out` is its input `<name>` passed through Identity: real onnxruntime, known answers. */
export function identityModel(inputs: { name: string; type: ElementType; dims: Dim[] }[]): Uint8Array {
  const graph = onnx.GraphProto.create({
    name: 'identity',
    node: inputs.map((input) => onnx.NodeProto.create({ opType: 'Identity', input: [input.name], output: [`${input.name}_out`] })),
    input: inputs.map((input) => valueInfo(input.name, input.type, input.dims)),
    output: inputs.map((input) => valueInfo(`${input.name}_out`, input.type, input.dims)),
  });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'modelfn-test', opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * A throwaway model repository: one folder per model with its ONNX bytes and a plain-object definition
 * (what `defineModel` returns), so tests exercise discovery exactly as users' folders are discovered.
 */
export function writeModelRepository(
  models: { name: string; onnx?: Uint8Array | string; definition?: Record<string, unknown>; source?: string }[],
  /** A definition that imports packages (onnxruntime-node) must live where the project's node_modules resolve. */
  options: { insideProject?: boolean } = {},
): string {
  const base = options.insideProject ? path.join(fileURLToPath(new URL('../../', import.meta.url)), 'tmp') : tmpdir();
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, 'modelfn-models-'));
  for (const model of models) {
    const modelDir = path.join(dir, model.name);
    mkdirSync(modelDir, { recursive: true });
    if (model.onnx !== undefined) writeFileSync(path.join(modelDir, 'model.onnx'), model.onnx);
    const source =
      model.source ??
      `export default ${JSON.stringify({ name: model.name, version: '1', file: 'model.onnx', ...model.definition })};\n`;
    writeFileSync(path.join(modelDir, 'model.js'), source);
  }
  return dir;
}
