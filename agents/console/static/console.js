// The cronbus console: every read and change through the REST API, the bearer token from this
// tab's sessionStorage in the Authorization header; live changes from /events/stream (read
// with fetch, which can send that header; EventSource cannot). Alpine's x-text writes text,
// never HTML, so a tenant's data shows as it is.
"use strict";

const TOKEN_KEY = "cronbus.token";
// one formatter for every time shown (toLocaleString builds one per call: slow for a page of rows)
const LOCAL_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
// a job's state as a schedule's run status (agents/schedules/api_rules.py RUN_STATUS)
const RUN_STATUS = { waiting: "pending", active: "processing", retry_due: "processing",
                     completed: "completed", dead_lettered: "failed" };

document.addEventListener("alpine:init", () => {
  window.Alpine.data("console", () => ({
    pages: ["queues", "jobs", "schedules", "clocks", "dead-letters"],
    titles: { queues: "Queues", jobs: "Jobs", schedules: "Schedules", clocks: "World clocks",
              "dead-letters": "Dead letters" },
    states: ["waiting", "active", "retry_due", "completed", "dead_lettered"],
    page: "queues",
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    tokenInput: "",
    tenant: "",
    seesAll: false,
    error: "",
    notice: "",
    live: false,
    stream: null,
    queues: [],
    queueScope: "",
    services: [],
    pausedTopics: [],
    actingFor: "",
    jobId: "",
    jobFilter: { tenant: "", state: "" },
    jobs: [],
    jobOffset: 0,
    jobNext: null,
    job: null,
    schedules: [],
    scheduleOffset: 0,
    scheduleNext: null,
    scheduleTotal: 0,
    schedule: null,
    runs: [],
    runsLoading: false,
    nextRuns: [],
    deleting: null,
    backfillFrom: "",
    backfillTo: "",
    clock: null,
    clockProblem: "",
    campaigns: [],
    campaignTotal: 0,
    worldFires: [],
    letterFilter: { job_type: "", tenant: "", error_type: "", since: "", until: "" },
    letters: [],
    letterOffset: 0,
    letterNext: null,
    letterTotal: 0,
    letter: null,
    force: false,
    dryRun: null,

    init() {
      window.addEventListener("hashchange", () => this.open());
      if (this.token) this.start();
    },

    async login() {
      this.token = this.tokenInput.trim();
      this.tokenInput = "";
      sessionStorage.setItem(TOKEN_KEY, this.token);
      await this.start();
    },

    logout() {
      sessionStorage.removeItem(TOKEN_KEY);
      this.token = "";
      this.tenant = "";
      this.actingFor = "";
      if (this.stream) this.stream.abort();
    },

    // who the token is comes with the queues; a page that needs neither loads its data meanwhile
    async start() {
      const first = this.wanted();
      const alongside = !["queues", "clocks"].includes(first);
      if (alongside) this.open();
      try {
        const queues = await this.api("GET", "/queues");
        this.seesAll = queues.scope === "all";
        this.tenant = this.seesAll ? "all tenants" : queues.scope;
        this.setQueues(queues);
      } catch (e) { return; }
      this.listen();
      if (first === "queues") this.page = "queues";  // its data just came
      else if (!alongside) this.open();
    },

    wanted() {
      const wanted = (location.hash || "#queues").slice(1);
      return this.pages.includes(wanted) ? wanted : "queues";
    },

    open() {
      this.page = this.wanted();
      this.error = "";
      this.notice = "";
      ({ queues: () => this.loadQueues(), jobs: () => this.jobs.length || this.job || this.loadJobs(0),
         schedules: () => this.loadSchedules(), clocks: () => this.loadClocks(),
         "dead-letters": () => this.loadLetters(0) })[this.page]();
    },

    // --- the REST API ---------------------------------------------------------------------
    async api(method, path, body) {
      const headers = { Authorization: "Bearer " + this.token };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let answer;
      try {
        answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (e) {
        this.error = "The worker did not answer: " + e.message;
        throw e;
      }
      if (answer.status === 401) {
        this.logout();
        this.error = "That token is not valid here: sign in with a token of CRONBUS_WEB_API_TOKENS.";
        throw new Error("unauthorized");
      }
      const data = answer.status === 204 ? null : await answer.json();
      if (!answer.ok) {
        const problems = (data && data.problems || []).map(p => p.field + ": " + p.message).join("; ");
        this.error = (data && data.error || answer.statusText) + (problems ? " — " + problems : "");
        throw new Error(this.error);
      }
      return data;
    },

    query(fields) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(fields)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
      const text = q.toString();
      return text ? "?" + text : "";
    },

    // --- live -----------------------------------------------------------------------------
    async listen() {
      if (this.stream) this.stream.abort();
      const stream = this.stream = new AbortController();
      while (this.token && !stream.signal.aborted) {
        try {
          const answer = await fetch("/events/stream", {
            headers: { Authorization: "Bearer " + this.token }, signal: stream.signal });
          if (!answer.ok) throw new Error("stream answered " + answer.status);
          this.live = true;
          const reader = answer.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              this.onEvent(buffer.slice(0, end));
              buffer = buffer.slice(end + 2);
            }
          }
        } catch (e) { /* reconnect below */ }
        this.live = false;
        await new Promise(done => setTimeout(done, 1000));
      }
    },

    onEvent(chunk) {
      let name = "message";
      let data = "";
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) return;
      const payload = JSON.parse(data);
      if (name === "queues") {
        for (const q of this.queues) Object.assign(q, payload[q.job_type] || {});
      } else if (name === "services") {
        this.services = payload.services;
        this.pausedTopics = payload.paused_topics || [];
        for (const q of this.queues) q.paused = !!payload.paused[q.job_type];
      } else if (name === "jobs") {
        for (const changed of payload) this.jobChanged(changed);
      } else if (name === "dead-letters" && this.page === "dead-letters") {
        this.loadLetters(this.letterOffset);
        setTimeout(() => this.loadLetters(this.letterOffset), 1000);  // a record still on its way
      }
    },

    jobChanged(changed) {
      const i = this.jobs.findIndex(j => j.job_id === changed.job_id);
      if (i >= 0) this.jobs[i] = changed;
      else if (!this.jobOffset && this.page === "jobs" && !this.jobFilter.state && !this.jobFilter.tenant) this.jobs.unshift(changed);
      if (this.job && this.job.job_id === changed.job_id) this.refreshJob(changed.job_id);
      for (const d of this.letters) if (d.job_id === changed.job_id) d.job_state = changed.state;
      // a run the open schedule's history has not shown yet (its fire, a backfill): read it again
      const s = this.schedule;
      if (s && changed.type === s.job_type && changed.tenant_id === s.tenant_id
          && !this.runs.some(r => r.job_id === changed.job_id)) this.reloadRuns();
      // the open schedule's newest run changed: its row's last status too
      if (s && this.runs.length && this.runs[0].job_id === changed.job_id) {
        const row = this.schedules.find(x => x.id === s.id);
        if (row) row.last_status = RUN_STATUS[changed.state] || row.last_status;
      }
      for (const r of this.runs) if (r.job_id === changed.job_id) {
        r.state = changed.state;
        r.attempts = changed.attempts;
        if (changed.last_error) r.error = changed.last_error;
      }
    },

    // --- pages ----------------------------------------------------------------------------
    setQueues(answer) {
      this.queues = answer.queues;
      this.queueScope = answer.scope;
      this.services = answer.services || [];
      this.pausedTopics = answer.paused_topics || [];
    },

    async loadQueues() {
      this.setQueues(await this.api("GET", "/queues"));
    },

    // the last full minute's completed jobs, and bars of the last minutes (tallest: 100%)
    lastMinute(q) {
      const counts = q.completed_per_minute || [];
      const full = counts.length > 1 ? counts[counts.length - 2] : null;
      return full === null || full === undefined ? "…" : full + "/min";
    },

    bars(q) {
      const counts = (q.completed_per_minute || []).map(c => c ?? 0);
      const top = Math.max(1, ...counts);
      return counts.map((c, i) => ({ i, c, height: Math.round(100 * c / top) + "%" }));
    },

    // the tenant the system tenant acts for on the schedules API (its own, when none is named)
    acting() {
      return this.seesAll && this.actingFor.trim() ? { tenant: this.actingFor.trim() } : {};
    },

    async loadJobs(offset) {
      const answer = await this.api("GET", "/jobs" + this.query({ ...this.jobFilter, offset, limit: 50 }));
      this.jobs = answer.items;
      this.jobOffset = answer.offset;
      this.jobNext = answer.next_offset;
    },

    async findJob() {
      if (this.jobId.trim()) await this.showJob(this.jobId.trim());
    },

    async showJob(jobId) {
      if (!jobId) return;
      this.job = null;
      try {
        this.job = await this.api("GET", "/jobs/" + encodeURIComponent(jobId));
        location.hash = "#jobs";
      } catch (e) { /* this.error says why */ }
    },

    // one page of 50 from the server, by id
    async reloadRuns() {
      if (this.runsLoading || !this.schedule) return;  // one read at a time; the next event brings the rest
      this.runsLoading = true;
      try {
        const s = this.schedule;
        const acting = this.query(this.acting());
        const answer = await this.api("GET", this.schedulePath(s, "/runs") + acting);
        if (this.schedule && this.schedule.id === s.id) this.runs = answer.runs;
      } catch (e) { /* this.error says why */ } finally { this.runsLoading = false; }
    },

    // the job shown changed: its whole page again (attempts, timeline), kept open meanwhile
    async refreshJob(jobId) {
      try {
        const fresh = await this.api("GET", "/jobs/" + encodeURIComponent(jobId));
        if (this.job && this.job.job_id === jobId) this.job = fresh;
      } catch (e) { /* this.error says why */ }
    },

    async loadSchedules(offset) {
      if (offset !== undefined) this.scheduleOffset = offset;
      const answer = await this.api("GET", "/schedules" + this.query({ ...this.acting(), offset: this.scheduleOffset, limit: 50 }));
      this.schedules = answer.schedules;
      this.scheduleNext = answer.next_offset;
      this.scheduleTotal = answer.total;
      if (this.schedule) {
        const still = this.schedules.find(s => s.id === this.schedule.id);
        if (still) await this.showSchedule(still); else this.schedule = null;
      }
    },

    schedulePath(s, rest) {
      return "/schedules/" + encodeURIComponent(s.id) + (rest || "");
    },

    async showSchedule(s) {
      const acting = this.query(this.acting());
      const sep = acting ? "&" : "?";
      const [next, runs] = await Promise.all([
        this.api("GET", this.schedulePath(s, "/next") + acting + sep + "count=5"),
        this.api("GET", this.schedulePath(s, "/runs") + acting)]);
      this.schedule = s;
      this.nextRuns = next.next;
      this.runs = runs.runs;
    },

    async scheduleAction(s, action) {
      const answer = await this.api("POST", this.schedulePath(s, "/" + action) + this.query(this.acting()));
      this.notice = action === "trigger" ? "Triggered " + s.id + ": job " + answer.run.job_id
                                         : (action === "pause" ? "Paused " : "Resumed ") + s.id;
      await this.loadSchedules();
      if (action === "trigger") await this.showSchedule(this.schedules.find(x => x.id === s.id) || s);
    },

    async deleteSchedule(s) {
      await this.api("DELETE", this.schedulePath(s) + this.query(this.acting()));
      this.deleting = null;
      if (this.schedule && this.schedule.id === s.id) this.schedule = null;
      this.notice = "Deleted " + s.id;
      await this.loadSchedules();
    },

    async backfill() {
      const answer = await this.api("POST", this.schedulePath(this.schedule, "/backfill") + this.query(this.acting()),
                                    { from: this.backfillFrom, to: this.backfillTo });
      this.notice = "Backfill: " + answer.sent + " run(s) sent, " + answer.already + " sent before";
      await this.showSchedule(this.schedule);
    },

    async loadClocks() {
      this.clock = null;
      this.clockProblem = "";
      this.worldFires = [];
      const campaign = this.seesAll ? this.actingFor.trim() : this.tenant;
      if (!campaign) {
        // the system tenant: every campaign's clock, one to pick
        const answer = await this.api("GET", "/clocks?limit=100");
        this.campaigns = answer.clocks;
        this.campaignTotal = answer.total;
        this.clockProblem = answer.total ? "" : "No campaign has a world clock yet: it starts with a campaign's first world-time-advanced event.";
        return;
      }
      this.campaigns = [];
      try {
        this.clock = await this.api("GET", "/clocks/" + encodeURIComponent(campaign));
      } catch (e) { this.error = ""; }
      const acting = this.query(this.acting());
      const sep = acting ? "&" : "?";
      const world = (await this.api("GET", "/schedules" + acting)).schedules.filter(s => s.clock === "world" && !s.paused);
      for (const s of world.slice(0, 20)) {
        const next = await this.api("GET", this.schedulePath(s, "/next") + acting + sep + "count=3");
        for (const n of next.next) this.worldFires.push({ schedule: s.name || s.id, at: n.at, utc: n.utc });
      }
    },

    async showCampaign(tenant) {
      this.actingFor = tenant;
      await this.loadClocks();
    },

    letterQuery() {
      return { ...this.letterFilter };
    },

    async loadLetters(offset) {
      const answer = await this.api("GET", "/dead-letters" + this.query({ ...this.letterQuery(), offset, limit: 50 }));
      this.letters = answer.items;
      this.letterOffset = answer.offset;
      this.letterNext = answer.next_offset;
      this.letterTotal = answer.total;
    },

    async replayOne(d) {
      const answer = await this.api("POST", "/dead-letters/replay", { letter: d.ref, force: this.force });
      this.notice = "Replayed " + answer.replayed + " dead letter(s); the job's state updates here as it runs.";
    },

    async replayFiltered(dry) {
      const body = { ...this.letterQuery(), force: this.force, dry_run: dry };
      for (const k of Object.keys(body)) if (body[k] === "") delete body[k];
      const answer = await this.api("POST", "/dead-letters/replay", body);
      if (dry) { this.dryRun = answer.matched; return; }
      this.dryRun = null;
      this.notice = "Replayed " + answer.replayed + " dead letter(s).";
    },

    // --- dates: the viewer's zone, UTC on hover ---------------------------------------------
    local(at) {
      if (at === null || at === undefined || at === "") return "";
      const when = typeof at === "number" ? new Date(at * 1000) : new Date(at);
      return isNaN(when) ? String(at) : LOCAL_TIME.format(when);
    },

    utc(at) {
      if (at === null || at === undefined || at === "") return "";
      const when = typeof at === "number" ? new Date(at * 1000) : new Date(at);
      return isNaN(when) ? String(at) : when.toISOString().replace(".000Z", "Z") + " (UTC)";
    },
  }));
});
