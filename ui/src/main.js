/*
 * nethvoice-bypass module UI, shown by cluster-admin in an iframe.
 * SPDX-License-Identifier: GPL-3.0-or-later
 */
import Vue from "vue";
import App from "./App.vue";
import router from "./router";
import store from "./store";
import i18n from "./i18n";

import "carbon-components/css/carbon-components.min.css";
import "./styles/app.css";

import CarbonComponentsVue from "@carbon/vue";
Vue.use(CarbonComponentsVue);

import axios from "axios";
axios.defaults.timeout = 10000;
import VueAxios from "vue-axios";
Vue.use(VueAxios, axios);

import ns8Lib from "@nethserver/ns8-ui-lib";
Vue.use(ns8Lib);

// global mixin to set the page title of cluster-admin
import { PageTitleService } from "@nethserver/ns8-ui-lib";
Vue.mixin(PageTitleService);

Vue.config.productionTip = false;

new Vue({
  router,
  store,
  i18n,
  render: (h) => h(App),
}).$mount("#ns8-app");
