// Worker-thread entry of `modelfn batch`: worker threads do not inherit a loader registered with
// module.register() in the main thread, so this plain-JS entry registers tsx, then loads the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./batch-worker.ts');
