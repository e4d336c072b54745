// --device cpu | cuda | auto: auto takes CUDA where a GPU and libloracuda.so are present, else the CPU twin.
import { log } from "../log.ts";
import { Device, NativeError } from "./device.ts";

export type DeviceChoice = "cpu" | "cuda" | "auto";

export async function openDevice(choice: DeviceChoice): Promise<Device> {
  if (choice !== "auto") return Device.open(choice);
  try {
    const device = await Device.open("cuda");
    log.info(`device: cuda (${device.libraryPath})`);
    return device;
  } catch (e) {
    if (!(e instanceof NativeError)) throw e;
    log.info(`device: cpu (CUDA unavailable: ${e.message})`);
    return Device.open("cpu");
  }
}
