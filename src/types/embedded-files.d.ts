// Binary files imported `with { type: "file" }` resolve to a path (embedded in compiled builds).
declare module "*.safetensors" {
  const path: string;
  export default path;
}

// The chart library's browser build and stylesheet, imported `with { type: "text" }` into report pages.
declare module "uplot/dist/uPlot.iife.min.js" {
  const source: string;
  export default source;
}
declare module "uplot/dist/uPlot.min.css" {
  const source: string;
  export default source;
}

// The systemd unit, imported `with { type: "text" }` by install-service.
declare module "*.service" {
  const text: string;
  export default text;
}
