# Shared by .ci/slurm-up and .ci/slurm-down: where the private cluster lives and how to
# tell whether a daemon we started still runs. Stopped daemons can linger here as zombies
# (nothing reaps them), so `kill -0` is no test: read the state in /proc/PID/stat.
# shellcheck shell=bash

DIR=${ITNAS_SLURM_DIR:-/tmp/itnas-slurm}
CONF=$DIR/etc/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf # a symlink to $CONF while the cluster runs (srun in job steps reads it)
STARTED=$DIR/started # one line per daemon slurm-up started: NAME PID STARTTIME
export SLURM_CONF=$CONF
export PATH=/usr/sbin:/sbin:$PATH

# Field N of /proc/PID/stat (3: state, 22: start time); the command name may hold spaces.
proc_field() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f"$(($2 - 2))"; }
alive() { local s; s=$(proc_field "$1" 3) || return 1; [[ -n $s && $s != Z && $s != X ]]; }
# PID is alive and still the process we started (not a reused pid).
ours_alive() { alive "$1" && [[ $(proc_field "$1" 22) == "$2" ]]; }
