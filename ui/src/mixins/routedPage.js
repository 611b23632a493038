/*
 * A page of the app's router: keeps the page name in `q.page` (each page sets it in its
 * data) in sync with cluster-admin's address bar, the way NS8 module pages do.
 */
import { QueryParamService } from "@nethserver/ns8-ui-lib";

export default {
  mixins: [QueryParamService],
  data() {
    return {
      urlCheckInterval: null,
    };
  },
  beforeRouteEnter(to, from, next) {
    next((vm) => {
      vm.watchQueryData(vm);
      vm.urlCheckInterval = vm.initUrlBindingForApp(vm, vm.q.page);
    });
  },
  beforeRouteLeave(to, from, next) {
    clearInterval(this.urlCheckInterval);
    next();
  },
  beforeDestroy() {
    clearInterval(this.urlCheckInterval);
  },
};
