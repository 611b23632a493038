import Vue from "vue";
import VueRouter from "vue-router";
import Status from "../views/Status.vue";

Vue.use(VueRouter);

// Pages are named after their path: cluster-admin's URL carries the page as
// ?page=<name> (QueryParamService) and App.vue routes to it.
export const PAGES = ["status", "forwards", "trunks", "diagnose", "about"];

const routes = [
  {
    path: "/",
    name: "Status",
    component: Status,
    alias: "/status",
  },
  {
    path: "/forwards",
    name: "Forwards",
    component: () =>
      import(/* webpackChunkName: "forwards" */ "../views/Forwards.vue"),
  },
  {
    path: "/trunks",
    name: "Trunks",
    component: () =>
      import(/* webpackChunkName: "trunks" */ "../views/Trunks.vue"),
  },
  {
    path: "/diagnose",
    name: "Diagnose",
    component: () =>
      import(/* webpackChunkName: "diagnose" */ "../views/Diagnose.vue"),
  },
  {
    path: "/about",
    name: "About",
    component: () =>
      import(/* webpackChunkName: "about" */ "../views/About.vue"),
  },
];

const router = new VueRouter({
  base: process.env.BASE_URL,
  routes,
});

export default router;
