/**
 * node:crypto, loaded by its first use instead of by an `import`: an ES module import of it costs every function's
 * cold start ~2 ms, also the invocations that never make an id or sign a webhook (process.getBuiltinModule:
 * Node 20.16+, 22.3+).
 */
export function nodeCrypto(): typeof import('node:crypto') {
  return process.getBuiltinModule('node:crypto');
}
