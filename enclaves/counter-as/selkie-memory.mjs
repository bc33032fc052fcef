// asc transform: import the enclave's memory as "selkie:sys" "memory" (enclaves/ABI.md §1) instead
// of asc's fixed "env" "memory". Used with --importMemory; see enclaves/counter-as/README.md.
//
// Binaryen's addMemoryImport on an existing memory only renames its import (module and base), so the
// compiled module keeps its memory limits and every memory instruction unchanged.
import { Transform } from "assemblyscript/transform";

export default class SelkieMemory extends Transform {
  afterCompile(module) {
    module.addMemoryImport("0", "selkie:sys", "memory");
  }
}
