/** One line of a batch results file (`modelfn batch`, the S3 and Step Functions handlers), for the anomaly model. */
export interface OutputLine {
  id: string | number;
  line: number;
  prediction: { score: number; anomaly: boolean };
}

/** One line of a batch errors file. */
export interface ErrorLine {
  line: number;
  id?: string | number;
  error: string;
}

/** The JSON values of a JSON-lines text, blank lines skipped. */
export function parseJsonLines<T>(text: string): T[] {
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as T);
}
