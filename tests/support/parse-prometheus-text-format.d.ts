// Types for the test-only Prometheus text-format parser (the package ships none).
declare module 'parse-prometheus-text-format' {
  interface PromSample {
    value: string;
    labels?: Record<string, string>;
  }
  interface PromFamily {
    name: string;
    help: string;
    type: string;
    metrics: PromSample[];
  }
  export default function parsePrometheusTextFormat(text: string): PromFamily[];
}
