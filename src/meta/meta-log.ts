/**
 * MetaLog: how the rest of Cairn changes and reads the cluster map. Today the single-node log
 * (src/control/single-node-log.ts) implements it; the Raft driver will implement it next, and
 * callers (control API, CSI, daemon) must not notice the difference beyond the errors listed here.
 *
 * Ordering: proposals from one caller are applied in the order `propose` was called. A resolved
 * proposal is applied on this node and durable (a single node: fsynced; Raft: committed by a
 * quorum and applied here), so every later read through `map` sees it.
 */
import type { ClusterMapView } from './cluster-map';
import type { Command, CommandResult } from './types';

export interface MetaLog {
  /**
   * Appends the command to the log, waits until it is applied and durable, and resolves with its
   * result. A command the map refuses (validation) still resolves: its result has outcome 'error'
   * (use `outcomeOf` from results.ts to turn that into a thrown CairnError).
   *
   * Rejects, without the command being applied, with CairnError:
   * - CAIRN_INVALID_ARGUMENT: the command cannot be encoded (a number that is not a safe integer);
   * - CAIRN_UNAVAILABLE (retryable): too many proposals are waiting; retry with the same request id;
   * - CAIRN_NOT_LEADER (Raft only, retryable): propose on the leader instead;
   * - CAIRN_CLOSED / CAIRN_SHUTTING_DOWN: the log is closed or closing.
   * Rejects with CAIRN_IO when persisting failed: the outcome is then unknown (retry with the same
   * request id after the daemon restarted) and the log refuses all further proposals.
   */
  propose(command: Command): Promise<CommandResult>;

  /** The map as applied on this node: serializable reads, possibly behind the leader under Raft. */
  readonly map: ClusterMapView;

  /** Stops accepting proposals (CAIRN_SHUTTING_DOWN), waits for the accepted ones, then resolves. */
  close(): Promise<void>;
}
