// Binary files imported `with { type: "file" }` resolve to a path (embedded in compiled builds).
declare module "*.safetensors" {
  const path: string;
  export default path;
}
