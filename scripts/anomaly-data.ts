/**
 * Synthetic user-activity data for the `anomaly` example model, plus the ROC AUC used to judge it.
 * Imported by scripts/train-anomaly.ts, the tests and benchmarks; importing has no side effects.
 */

/** Model input columns, in tensor order. */
export const FEATURE_NAMES = [
  'logins',
  'failed_logins',
  'sessions',
  'session_minutes',
  'bytes_downloaded_mb',
  'distinct_ips',
  'countries',
  'night_activity_ratio',
  'api_calls',
  'files_accessed',
  'privilege_changes',
] as const;

export type FeatureName = (typeof FEATURE_NAMES)[number];
export type UserDayFeatures = Record<FeatureName, number>;

export type Persona = 'office' | 'developer' | 'traveler' | 'admin' | 'light';
export type AnomalyKind = 'account_takeover' | 'exfiltration' | 'bot' | 'privilege_escalation';

export interface UserDay extends UserDayFeatures {
  /** 1 = anomalous user-day. */
  label: 0 | 1;
  kind: AnomalyKind | 'normal';
  /** The persona the row's normal behaviour was drawn from (for anomalies: the victim or insider). */
  persona: Persona;
}

/** mulberry32: tiny, fast, good enough for synthetic data and weight init. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  readonly next: () => number;
  private spare: number | undefined;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u = 1 - this.next(); // (0, 1], keeps log finite
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  poisson(lambda: number): number {
    if (lambda <= 0) return 0;
    if (lambda > 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }

  pick<T extends string>(weights: Record<T, number>): T {
    const entries = Object.entries(weights) as [T, number][];
    const total = entries.reduce((s, [, w]) => s + w, 0);
    let r = this.next() * total;
    for (const [key, w] of entries) {
      r -= w;
      if (r < 0) return key;
    }
    return entries[entries.length - 1]![0];
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

const PERSONA_WEIGHTS: Record<Persona, number> = { office: 0.45, developer: 0.2, light: 0.15, traveler: 0.12, admin: 0.08 };
const ANOMALY_WEIGHTS: Record<AnomalyKind, number> = {
  account_takeover: 0.4,
  exfiltration: 0.3,
  bot: 0.2,
  privilege_escalation: 0.1,
};

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
const round = (x: number, decimals: number) => Math.round(x * 10 ** decimals) / 10 ** decimals;

/** One ordinary day of a user of the given persona; `level` is how busy this particular user is. */
function normalDay(rng: Rng, persona: Persona): UserDayFeatures {
  const level = rng.logNormal(1, 0.35);
  const d: UserDayFeatures = {
    logins: 0,
    failed_logins: 0,
    sessions: 0,
    session_minutes: 0,
    bytes_downloaded_mb: 0,
    distinct_ips: 0,
    countries: 1,
    night_activity_ratio: 0,
    api_calls: 0,
    files_accessed: 0,
    privilege_changes: 0,
  };
  switch (persona) {
    case 'office':
      d.logins = 1 + rng.poisson(2.5 * level);
      d.failed_logins = rng.poisson(0.3);
      d.session_minutes = clamp(rng.logNormal(360, 0.35) * Math.sqrt(level), 20, 900);
      d.bytes_downloaded_mb = rng.logNormal(150 * level, 0.9);
      d.distinct_ips = 1 + rng.poisson(0.3);
      d.countries = rng.chance(0.01) ? 2 : 1; // VPN exit node abroad
      d.night_activity_ratio = 0.01 + 0.08 * rng.next() ** 2;
      d.api_calls = rng.poisson(rng.logNormal(20 * level, 0.6));
      d.files_accessed = rng.poisson(25 * level);
      d.privilege_changes = rng.chance(0.005) ? 1 : 0;
      break;
    case 'developer':
      d.logins = 1 + rng.poisson(3.5 * level);
      d.failed_logins = rng.poisson(0.5);
      d.session_minutes = clamp(rng.logNormal(420, 0.35) * Math.sqrt(level), 30, 1000);
      d.bytes_downloaded_mb = rng.logNormal(800 * level, 1.1); // images, packages, datasets
      d.distinct_ips = 1 + rng.poisson(0.8);
      d.countries = rng.chance(0.02) ? 2 : 1;
      d.night_activity_ratio = rng.chance(0.3) ? rng.uniform(0.1, 0.45) : rng.uniform(0.01, 0.12);
      d.api_calls = rng.poisson(rng.logNormal(800 * level, 1.1)); // scripts and CI
      d.files_accessed = rng.poisson(rng.logNormal(80 * level, 0.7));
      d.privilege_changes = rng.poisson(0.05);
      break;
    case 'traveler':
      d.logins = 1 + rng.poisson(5 * level);
      d.failed_logins = rng.poisson(0.7); // phone typos
      d.session_minutes = clamp(rng.logNormal(200, 0.5) * Math.sqrt(level), 10, 800);
      d.bytes_downloaded_mb = rng.logNormal(100 * level, 0.9);
      d.distinct_ips = 1 + rng.poisson(2 * level);
      if (rng.chance(0.25)) {
        d.countries = 2 + rng.poisson(0.3); // travel day
        d.distinct_ips += 1 + rng.poisson(1.5);
        d.night_activity_ratio = rng.uniform(0.05, 0.5); // time zones
      } else {
        d.night_activity_ratio = rng.uniform(0.02, 0.2);
      }
      d.api_calls = rng.poisson(rng.logNormal(30 * level, 0.6));
      d.files_accessed = rng.poisson(20 * level);
      d.privilege_changes = 0;
      break;
    case 'admin':
      d.logins = 2 + rng.poisson(6 * level);
      d.failed_logins = rng.poisson(0.8);
      d.session_minutes = clamp(rng.logNormal(480, 0.3) * Math.sqrt(level), 60, 1100);
      d.bytes_downloaded_mb = rng.logNormal(400 * level, 1.0);
      d.distinct_ips = 1 + rng.poisson(1.5);
      d.countries = rng.chance(0.02) ? 2 : 1;
      d.night_activity_ratio = rng.uniform(0.05, 0.35); // on-call
      d.api_calls = rng.poisson(rng.logNormal(2000 * level, 0.8));
      d.files_accessed = rng.poisson(rng.logNormal(150 * level, 0.6));
      d.privilege_changes = rng.poisson(1.5 * level);
      break;
    case 'light':
      d.logins = 1 + rng.poisson(0.5 * level);
      d.failed_logins = rng.poisson(0.2);
      d.session_minutes = clamp(rng.logNormal(45, 0.7), 2, 400);
      d.bytes_downloaded_mb = rng.logNormal(20 * level, 1.0);
      d.distinct_ips = 1 + rng.poisson(0.1);
      d.countries = 1;
      d.night_activity_ratio = rng.chance(0.7) ? 0 : rng.uniform(0, 0.3);
      d.api_calls = rng.poisson(rng.logNormal(5 * level, 0.8));
      d.files_accessed = rng.poisson(5 * level);
      d.privilege_changes = 0;
      break;
  }
  d.sessions = Math.max(1, d.logins - rng.poisson(0.3) + rng.poisson(1));
  // Benign days that look odd: a forgotten password, a new laptop syncing everything, a conference abroad.
  if (rng.chance(0.02)) d.failed_logins += 3 + rng.poisson(4);
  if (rng.chance(0.01)) {
    d.bytes_downloaded_mb *= rng.uniform(5, 30);
    d.files_accessed += rng.poisson(rng.logNormal(300, 0.8));
  }
  if (rng.chance(0.005)) {
    d.countries += 1;
    d.distinct_ips += 2 + rng.poisson(2);
    d.night_activity_ratio = Math.max(d.night_activity_ratio, rng.uniform(0.2, 0.6));
  }
  return d;
}

/** Turns a normal day into an anomalous one; `s` in (0, 1] is how blatant it is, so weak ones overlap the normals. */
function corrupt(rng: Rng, d: UserDayFeatures, kind: AnomalyKind, s: number): void {
  switch (kind) {
    case 'account_takeover':
      d.failed_logins += rng.poisson(1 + 20 * s);
      d.logins += rng.poisson(1 + 4 * s);
      d.distinct_ips += rng.poisson(0.5 + 6 * s);
      if (rng.chance(0.2 + 0.7 * s)) d.countries += 1 + rng.poisson(2 * s);
      d.night_activity_ratio += (rng.uniform(0.4, 0.95) - d.night_activity_ratio) * s;
      d.bytes_downloaded_mb *= 1 + 3 * s * rng.next();
      if (rng.chance(0.3 * s)) d.privilege_changes += 1 + rng.poisson(s);
      break;
    case 'exfiltration':
      d.bytes_downloaded_mb += rng.logNormal(150 + 20000 * s * s, 0.8);
      d.files_accessed += rng.poisson(rng.logNormal(20 + 1500 * s, 0.7));
      d.night_activity_ratio += (rng.uniform(0.2, 0.8) - d.night_activity_ratio) * s * rng.next();
      d.session_minutes *= 1 + 0.5 * s * rng.next();
      break;
    case 'bot':
      d.api_calls += rng.poisson(rng.logNormal(400 + 40000 * s, 0.7));
      d.session_minutes *= 0.05 + 0.95 * (1 - s) * rng.next();
      d.logins += rng.poisson(1 + 50 * s);
      d.sessions += rng.poisson(2 + 60 * s);
      d.night_activity_ratio += (rng.uniform(0.25, 0.4) - d.night_activity_ratio) * s; // round the clock ≈ 6/24
      d.distinct_ips += rng.poisson(3 * s);
      break;
    case 'privilege_escalation':
      d.privilege_changes += 1 + rng.poisson(5 * s);
      d.files_accessed += rng.poisson(30 + 300 * s);
      d.night_activity_ratio += (rng.uniform(0.3, 0.7) - d.night_activity_ratio) * s * rng.next();
      d.failed_logins += rng.poisson(1 + 3 * s);
      break;
  }
}

/**
 * `count` independent user-days; about `anomalyRate` of them anomalous (label 1), the rest normal behaviour
 * of five personas. Deterministic in `seed`.
 */
export function generateUserDays(count: number, seed: number, anomalyRate = 0.04): UserDay[] {
  const rng = new Rng(seed);
  const rows: UserDay[] = [];
  for (let i = 0; i < count; i++) {
    const persona = rng.pick(PERSONA_WEIGHTS);
    const d = normalDay(rng, persona);
    let kind: AnomalyKind | 'normal' = 'normal';
    if (rng.chance(anomalyRate)) {
      kind = rng.pick(ANOMALY_WEIGHTS);
      corrupt(rng, d, kind, rng.uniform(0.05, 1));
    }
    d.session_minutes = round(clamp(d.session_minutes, 0, 1440), 1);
    d.bytes_downloaded_mb = round(d.bytes_downloaded_mb, 2);
    d.night_activity_ratio = round(clamp(d.night_activity_ratio, 0, 1), 3);
    rows.push({ ...d, label: kind === 'normal' ? 0 : 1, kind, persona });
  }
  return rows;
}

/** The feature vector of a row, in FEATURE_NAMES order. */
export function featureVector(row: UserDayFeatures): number[] {
  return FEATURE_NAMES.map((name) => row[name]);
}

/** Only the named features (what a v1 instance carries), without label, kind and persona. */
export function toFeatures(row: UserDayFeatures): UserDayFeatures {
  return Object.fromEntries(FEATURE_NAMES.map((name) => [name, row[name]])) as UserDayFeatures;
}

/**
 * ROC AUC as the Mann-Whitney rank statistic: P(score of a random positive > score of a random negative),
 * ties counted as 1/2 via average ranks.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  const n = scores.length;
  if (labels.length !== n) throw new Error(`rocAuc: ${n} scores but ${labels.length} labels`);
  for (let i = 0; i < n; i++) if (Number.isNaN(scores[i])) throw new Error('rocAuc: NaN score');
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let positives = 0;
  let positiveRankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const averageRank = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!]) {
        positives++;
        positiveRankSum += averageRank;
      }
    }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) throw new Error('rocAuc: need both positive and negative labels');
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}
