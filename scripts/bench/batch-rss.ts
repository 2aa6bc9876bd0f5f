/**
 * Peak RSS without /usr/bin/time: runs a TypeScript entry in this process with the given arguments and, on
 * exit, prints `maxrss_kb=<n>` (process.resourceUsage().maxRSS, the whole process with its worker threads)
 * on stderr. Usage: node --import tsx scripts/bench/batch-rss.ts <entry.ts> [args...]
 */
import { writeSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: batch-rss.ts <entry.ts> [args...]');
  process.exit(1);
}
process.on('exit', () => writeSync(2, `maxrss_kb=${process.resourceUsage().maxRSS}\n`));
process.argv = [process.argv[0]!, path.resolve(entry), ...args];
await import(pathToFileURL(path.resolve(entry)).href);
