// Type helpers for checking gpufleet's generated dashboard JSON against @grafana/schema.
// TypeScript string enums are nominal: the JSON string "absolute" is not a ThresholdsMode.
// Loose<T> turns every string enum into the union of its values and keeps the rest of T
// (numeric enums, required keys, excess-property checks on object literals) as it is.
import type { Dashboard } from '@grafana/schema';

export type Loose<T> = T extends string
  ? `${T}`
  : T extends object
    ? { [K in keyof T]: Loose<T[K]> }
    : T;

export type LooseDashboard = Loose<Dashboard>;
