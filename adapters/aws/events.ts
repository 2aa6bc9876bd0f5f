/** Shape checks every trigger of this adapter uses on the events it is handed, and how a bad one is described. */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An event as an error message shows it: `null`, `a string`, `an array of 3`, or its first keys. */
export function describeEvent(event: unknown): string {
  if (event === null) return 'null';
  if (Array.isArray(event)) return `an array of ${event.length}`;
  if (!isRecord(event)) return `a ${typeof event}`;
  const keys = Object.keys(event);
  const shown = keys.slice(0, 12).map((key) => (key.length > 40 ? `${key.slice(0, 40)}…` : key));
  return `keys [${shown.join(',')}${keys.length > shown.length ? `,… ${keys.length - shown.length} more` : ''}]`;
}
