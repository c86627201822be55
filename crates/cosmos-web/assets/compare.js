// Compare: the picked outputs play as one group, in lockstep.
import { startAll } from "./lockstep.js";

startAll();
