/* fdplan.h: the file descriptors a job will still open once its plugins are open, so the
 * model engine can leave them free when it fits its connections under the limit
 * (core/fdlimit.h, models/descriptors.c). What is open already is counted where it is open;
 * this counts what comes later: Kafka clients connect to the brokers they learn, file sources
 * open the next file. The checkpoint and the summary borrow the pipeline's spare descriptor. */
#ifndef RUNNEL_FDPLAN_H
#define RUNNEL_FDPLAN_H

#include <lua.h>

#define FDPLAN_PER_BROKER 3   /* librdkafka: a socket and a wake-up pipe per broker thread */
#define FDPLAN_PER_CLIENT 4   /* librdkafka: its queues' wake-ups, the coordinator's connection */

/* Descriptors the job declared at stack index job (a job{} declaration) will open after its
 * plugins are open. */
long fdplan_job(lua_State *L, int job);

#endif
